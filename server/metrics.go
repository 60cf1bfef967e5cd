package server

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	gosync "sync"
	"sync/atomic"
	"time"

	"github.com/doorstep-health/doorstep/api"
	"github.com/labstack/echo/v4"
)

// metrics are the server's counters, exposed in the Prometheus text format
// at GET /metrics. They hold only aggregate counts: no user, device or
// record appears in them. Label sets are bounded (route templates, status
// codes, fixed bucket bounds).
type metrics struct {
	mu       gosync.Mutex
	requests map[reqKey]*reqStat

	changesApplied, changesDuplicate, changesRefused atomic.Int64
	opsPushed, opsNotMerged, itemsPulled             atomic.Int64
}

type reqKey struct {
	route  string
	status int
}

type reqStat struct {
	count int64
	sum   time.Duration
}

// syncBuckets are the upper bounds of the sync latency histogram.
var syncBuckets = []time.Duration{5 * time.Millisecond, 10 * time.Millisecond, 20 * time.Millisecond, 50 * time.Millisecond,
	100 * time.Millisecond, 250 * time.Millisecond, 500 * time.Millisecond, time.Second, 2500 * time.Millisecond, 5 * time.Second, 10 * time.Second}

type histogram struct {
	mu     gosync.Mutex
	counts []int64 // per bucket, then +Inf
	sum    time.Duration
}

func newMetrics() *metrics { return &metrics{requests: map[reqKey]*reqStat{}} }

func (m *metrics) observe(route string, status int, d time.Duration) {
	if route == "" {
		route = "unmatched"
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	k := reqKey{route, status}
	st, ok := m.requests[k]
	if !ok {
		st = &reqStat{}
		m.requests[k] = st
	}
	st.count++
	st.sum += d
}

func (h *histogram) observe(d time.Duration) {
	i, _ := slices.BinarySearch(syncBuckets, d)
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.counts == nil {
		h.counts = make([]int64, len(syncBuckets)+1)
	}
	h.counts[i]++
	h.sum += d
}

func (m *metrics) syncResult(resp *api.SyncResponse, pushedOps int) {
	m.opsPushed.Add(int64(pushedOps))
	for _, r := range resp.Results {
		switch r.Status {
		case api.ChangeApplied:
			m.changesApplied.Add(1)
		case api.ChangeDuplicate:
			m.changesDuplicate.Add(1)
		default:
			m.changesRefused.Add(1)
		}
		m.opsNotMerged.Add(int64(len(r.Ops)))
	}
	n := len(resp.Snapshot)
	for _, c := range resp.Changes {
		n += c.Ops.Len()
	}
	m.itemsPulled.Add(int64(n))
}

func (s *Server) metricsHandler(c echo.Context) error {
	var b strings.Builder
	m := s.metrics
	m.mu.Lock()
	keys := make([]reqKey, 0, len(m.requests))
	for k := range m.requests {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b reqKey) int {
		if c := strings.Compare(a.route, b.route); c != 0 {
			return c
		}
		return a.status - b.status
	})
	b.WriteString("# HELP doorstep_http_requests_total HTTP requests by route template and status.\n# TYPE doorstep_http_requests_total counter\n")
	for _, k := range keys {
		fmt.Fprintf(&b, "doorstep_http_requests_total{route=%q,status=\"%d\"} %d\n", k.route, k.status, m.requests[k].count)
	}
	b.WriteString("# HELP doorstep_http_request_seconds_sum Time spent serving requests by route template and status.\n# TYPE doorstep_http_request_seconds_sum counter\n")
	for _, k := range keys {
		fmt.Fprintf(&b, "doorstep_http_request_seconds_sum{route=%q,status=\"%d\"} %g\n", k.route, k.status, m.requests[k].sum.Seconds())
	}
	m.mu.Unlock()

	h := &s.syncLatency
	h.mu.Lock()
	b.WriteString("# HELP doorstep_sync_seconds Time the engine spent on successful syncs (push and pull).\n# TYPE doorstep_sync_seconds histogram\n")
	var cum int64
	for i, le := range syncBuckets {
		if h.counts != nil {
			cum += h.counts[i]
		}
		fmt.Fprintf(&b, "doorstep_sync_seconds_bucket{le=\"%g\"} %d\n", le.Seconds(), cum)
	}
	if h.counts != nil {
		cum += h.counts[len(syncBuckets)]
	}
	fmt.Fprintf(&b, "doorstep_sync_seconds_bucket{le=\"+Inf\"} %d\ndoorstep_sync_seconds_sum %g\ndoorstep_sync_seconds_count %d\n", cum, h.sum.Seconds(), cum)
	h.mu.Unlock()

	for _, c := range []struct {
		name, help string
		v          *atomic.Int64
	}{
		{"doorstep_sync_changes_applied_total", "Pushed changes applied.", &m.changesApplied},
		{"doorstep_sync_changes_duplicate_total", "Pushed changes already applied before (retries).", &m.changesDuplicate},
		{"doorstep_sync_changes_refused_total", "Pushed changes refused (seq gaps and the like).", &m.changesRefused},
		{"doorstep_sync_ops_pushed_total", "Ops received in pushed changes.", &m.opsPushed},
		{"doorstep_sync_ops_not_merged_total", "Pushed ops quarantined or refused.", &m.opsNotMerged},
		{"doorstep_sync_items_pulled_total", "Ops and snapshot records sent to devices.", &m.itemsPulled},
	} {
		fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s counter\n%s %d\n", c.name, c.help, c.name, c.name, c.v.Load())
	}
	return c.Blob(http.StatusOK, "text/plain; version=0.0.4; charset=utf-8", []byte(b.String()))
}
