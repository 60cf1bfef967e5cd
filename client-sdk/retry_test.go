package client

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/doorstep-health/doorstep/api"
)

func TestRetryAfterHeader(t *testing.T) {
	for h, want := range map[string]time.Duration{
		"":        0,
		"1":       time.Second,
		" 30 ":    30 * time.Second,
		"0":       0,
		"-3":      0,
		"soon":    0,
		"9999999": 0,
	} {
		if got := retryAfterHeader(h); got != want {
			t.Errorf("retryAfterHeader(%q) = %v, want %v", h, got, want)
		}
	}
	date := time.Now().Add(90 * time.Second).UTC().Format(http.TimeFormat)
	if got := retryAfterHeader(date); got < 80*time.Second || got > 90*time.Second {
		t.Errorf("retryAfterHeader(%q) = %v, want about 90s", date, got)
	}
}

func TestRetryWait(t *testing.T) {
	r := &Replica{opts: Options{MaxRetryWait: 5 * time.Second}}
	rl := api.NewProblem(api.CodeRateLimited, "slow down")
	rl.RetryAfterMillis = 300
	for _, tc := range []struct {
		err      error
		ok       bool
		min, max time.Duration
	}{
		{nil, false, 0, 0},
		{fmt.Errorf("client: sync: %w", rl), true, 300 * time.Millisecond, 330 * time.Millisecond},
		{api.NewProblem(api.CodeRateLimited, "no header"), true, time.Second, 1100 * time.Millisecond},
		{&api.Problem{Code: api.CodeRateLimited, RetryAfterMillis: 3_600_000}, true, 5 * time.Second, 5500 * time.Millisecond},
		{&api.Problem{Code: api.CodeUnavailable, RetryAfterMillis: 200}, true, 200 * time.Millisecond, 220 * time.Millisecond},
		{api.NewProblem(api.CodeUnavailable, "no wait given"), false, 0, 0},
		{api.NewProblem(api.CodeBodyTooLarge, ""), false, 0, 0},
	} {
		d, ok := r.retryWait(tc.err)
		if ok != tc.ok || d < tc.min || d > tc.max {
			t.Errorf("retryWait(%v) = %v, %v; want %v in [%v, %v]", tc.err, d, ok, tc.ok, tc.min, tc.max)
		}
	}
}
