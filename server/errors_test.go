package server

import (
	"context"
	"fmt"
	"net/http"
	"testing"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/auth"
	dsync "github.com/doorstep-health/doorstep/sync"
	"github.com/labstack/echo/v4"
)

func TestClassify(t *testing.T) {
	own := &Error{Code: api.CodeConflict, Detail: "mine"}
	cases := []struct {
		err    error
		code   api.Code
		detail string
	}{
		{fmt.Errorf("wrapped: %w", own), api.CodeConflict, "mine"},
		{echo.NewHTTPError(http.StatusNotFound, "no route"), api.CodeNotFound, "no route"},
		{echo.NewHTTPError(http.StatusMethodNotAllowed, "m"), api.CodeMethodNotAllowed, "m"},
		{echo.NewHTTPError(http.StatusRequestEntityTooLarge, "big"), api.CodeBodyTooLarge, "big"},
		{echo.NewHTTPError(http.StatusUnsupportedMediaType, "ct"), api.CodeUnsupportedMedia, "ct"},
		{echo.NewHTTPError(http.StatusUnauthorized, "who"), api.CodeUnauthorized, "who"},
		{echo.NewHTTPError(http.StatusForbidden, "no"), api.CodeForbidden, "no"},
		{echo.NewHTTPError(http.StatusTooManyRequests, "slow"), api.CodeRateLimited, "slow"},
		{echo.NewHTTPError(http.StatusServiceUnavailable, "down"), api.CodeUnavailable, "down"},
		{echo.NewHTTPError(http.StatusTeapot, "tea"), api.CodeBadRequest, "tea"},
		{echo.NewHTTPError(http.StatusBadGateway, "gw"), api.CodeInternal, "gw"},
		{fmt.Errorf("login: %w", auth.ErrInvalidCredentials), api.CodeInvalidCredentials, "unknown username or wrong password"},
		{fmt.Errorf("bad: %w", auth.ErrInvalid), api.CodeBadRequest, "bad: " + auth.ErrInvalid.Error()},
		{fmt.Errorf("push: %w", dsync.ErrTooLarge), api.CodeBodyTooLarge, "change too large"},
		{fmt.Errorf("push: %w", dsync.ErrClosed), api.CodeUnavailable, "server shutting down"},
		{context.DeadlineExceeded, api.CodeUnavailable, "request timed out"},
		{fmt.Errorf("disk on fire"), api.CodeInternal, "internal error"},
	}
	for _, c := range cases {
		e := classify(c.err)
		if e.Code != c.code || e.Detail != c.detail {
			t.Errorf("classify(%v) = %s %q, want %s %q", c.err, e.Code, e.Detail, c.code, c.detail)
		}
	}
}
