package server

import (
	"fmt"
	"log/slog"
	"net/http"
	"runtime"
	"strings"
	"time"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/auth"
	dsync "github.com/doorstep-health/doorstep/sync"
	"github.com/labstack/echo/v4"
)

// Context keys.
const (
	ctxClaims  = "doorstep.claims"
	ctxMsgpack = "doorstep.msgpack" // problems on this request are msgpack
)

// claimsOf returns the verified claims of an authenticated request.
func claimsOf(c echo.Context) *auth.Claims {
	cl, _ := c.Get(ctxClaims).(*auth.Claims)
	return cl
}

// callerOf builds the engine caller from the token alone: nothing in a body
// can set the author, the device or the teams.
func callerOf(c echo.Context) dsync.Caller {
	cl := claimsOf(c)
	return dsync.Caller{User: cl.Subject, Replica: cl.Replica(), Teams: append([]string(nil), cl.Teams...), Role: cl.Role}
}

// logRequests logs one line per request with slog.
func (s *Server) logRequests(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		start := time.Now()
		err := next(c)
		if err != nil {
			c.Error(err) // write the problem now so the status is known
		}
		res := c.Response()
		took := time.Since(start)
		attrs := []slog.Attr{
			slog.String("request_id", res.Header().Get(echo.HeaderXRequestID)),
			slog.String("method", c.Request().Method),
			slog.String("path", c.Request().URL.Path),
			slog.Int("status", res.Status),
			slog.Int64("bytes_in", c.Request().ContentLength),
			slog.Int64("bytes_out", res.Size),
			slog.Float64("duration_ms", durationMS(took)),
		}
		if cl := claimsOf(c); cl != nil {
			attrs = append(attrs, slog.String("user", cl.Subject), slog.String("device", cl.Device))
			s.metrics.seen(cl.Device, start)
		}
		if err != nil {
			e := classify(err)
			attrs = append(attrs, slog.String("code", string(e.Code)), slog.String("detail", e.Detail))
		}
		s.metrics.observe(c.Path(), c.Request().Method, res.Status, took)
		s.log.LogAttrs(c.Request().Context(), logLevel(res.Status), "http request", attrs...)
		return nil
	}
}

// durationMS is d in milliseconds, to the microsecond.
func durationMS(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// logLevel is the level of a request's log line: ERROR for a server
// failure; WARN for refusals an operator may want to look at (bad or
// missing credentials, a role or team refused, rate limiting, an oversized
// body: each can mean a misconfigured app or someone probing); INFO for
// the rest, ordinary 4xx included (a 404, a seq gap, a malformed body).
func logLevel(status int) slog.Level {
	switch {
	case status >= 500:
		return slog.LevelError
	case status == http.StatusUnauthorized, status == http.StatusForbidden,
		status == http.StatusTooManyRequests, status == http.StatusRequestEntityTooLarge:
		return slog.LevelWarn
	}
	return slog.LevelInfo
}

// recoverPanics turns a handler panic into a 500 problem and keeps serving.
func (s *Server) recoverPanics(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) (err error) {
		defer func() {
			if p := recover(); p != nil {
				buf := make([]byte, 8<<10)
				buf = buf[:runtime.Stack(buf, false)]
				s.log.Error("handler panic", "panic", fmt.Sprint(p), "path", c.Request().URL.Path, "stack", string(buf))
				err = &Error{Code: api.CodeInternal, Detail: "internal error", Err: fmt.Errorf("panic: %v", p)}
			}
		}()
		return next(c)
	}
}

// markMsgpack makes problems on this route msgpack. A refused sync may
// leave its body unread; the problem then closes the connection, or
// net/http would first try to read and discard the rest of the body
// (up to 256 KiB), which a slow sender trickles for minutes before it
// sees the answer.
func markMsgpack(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		c.Set(ctxMsgpack, true)
		err := next(c)
		if err != nil && !c.Response().Committed {
			c.Response().Header().Set(echo.HeaderConnection, "close")
		}
		return err
	}
}

// authenticate requires a valid Bearer access token of a device that is
// not revoked, and stores its claims in the context.
func (s *Server) authenticate(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		h := c.Request().Header.Get(echo.HeaderAuthorization)
		scheme, tok, ok := strings.Cut(h, " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(tok) == "" {
			return problemf(api.CodeUnauthorized, "an Authorization: Bearer access token is required")
		}
		if len(tok) > 8<<10 {
			return problemf(api.CodeUnauthorized, "access token too long")
		}
		cl, err := s.auth.Verify(strings.TrimSpace(tok))
		if err != nil {
			return err
		}
		// One read of the auth store: the device is not revoked and the
		// token not superseded, and the rights as they stand now (never
		// more than the token says, less if an admin has demoted the user
		// or removed a team since), set on cl.
		ctx := c.Request().Context()
		actor, err := s.auth.Authorize(ctx, cl)
		if err != nil {
			return err
		}
		c.Set(ctxClaims, cl)
		// The actor of every change and audit entry this request makes.
		c.SetRequest(c.Request().WithContext(auth.WithActor(ctx, actor)))
		return next(c)
	}
}

// requireRole refuses callers whose role has fewer rights than min.
func requireRole(min string) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			if !auth.RoleAtLeast(claimsOf(c).Role, min) {
				return problemf(api.CodeForbidden, "this route needs the %s role", min)
			}
			return next(c)
		}
	}
}

// requireTeam refuses a :team the caller is not in, with the same answer
// whether or not the team exists.
func requireTeam(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if !claimsOf(c).InTeam(c.Param("team")) {
			return problemf(api.CodeForbidden, "not a member of this team")
		}
		return next(c)
	}
}

// limitDevice applies the per-device rate limit on authenticated routes.
func (s *Server) limitDevice(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if ok, wait := s.deviceLimit.take(claimsOf(c).Device); !ok {
			s.metrics.rateLimited.WithLabelValues("device").Inc()
			return &Error{Code: api.CodeRateLimited, Detail: "too many requests from this device", RetryAfter: wait}
		}
		return next(c)
	}
}

// limitAuth applies the per-address rate limit on login, refresh, exchange
// and readyz (unauthenticated routes that cost a bcrypt or an fsync).
func (s *Server) limitAuth(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if ok, wait := s.authLimit.take(c.RealIP()); !ok {
			s.metrics.rateLimited.WithLabelValues("auth").Inc()
			return &Error{Code: api.CodeRateLimited, Detail: "too many requests from this address", RetryAfter: wait}
		}
		return next(c)
	}
}
