package server

import (
	"net/http"
	"regexp"

	"github.com/doorstep-health/doorstep/auth"
	"github.com/doorstep-health/doorstep/schema"
	dsync "github.com/doorstep-health/doorstep/sync"
	"github.com/doorstep-health/doorstep/web"
	"github.com/labstack/echo/v4"
)

// The console takes the engine and the auth service as small interfaces
// of its own (so that package web never reaches the store); these are the
// real ones the server wires in.
var (
	_ web.Engine       = (*dsync.Engine)(nil)
	_ web.Auth         = (*auth.Service)(nil)
	_ web.SessionStore = (*auth.Service)(nil)
)

// newConsole builds the coordinator console over the server's engine and
// auth service, sharing the API's login rate limit.
func (s *Server) newConsole() error {
	sch := s.cfg.Schema
	if sch == nil || s.cfg.NoSchema {
		sch = schema.Default()
	}
	c, err := web.New(web.Config{
		Engine: s.engine, Auth: s.auth, Sessions: s.auth, Schema: sch, Logger: s.log, Now: s.cfg.Now, Blobs: s.blobs,
		TrustProxy: s.cfg.TrustProxy,
		LoginAllowed: func(r *http.Request) bool {
			ip := r.RemoteAddr
			if s.echo != nil && s.echo.IPExtractor != nil {
				ip = s.echo.IPExtractor(r)
			}
			return s.authLimit.allow(ip)
		},
	})
	if err != nil {
		return err
	}
	s.console = c
	return nil
}

// mountConsole registers every console route (so that the route table,
// and api/openapi.yaml, list them), a catch-all for the console's own 404
// page, and sends / there.
func (s *Server) mountConsole(e *echo.Echo) {
	toConsole := func(c echo.Context) error { return c.Redirect(http.StatusSeeOther, "/console/") }
	e.GET("/", toConsole)
	e.GET("/console", toConsole)
	h := echo.WrapHandler(s.console)
	param := regexp.MustCompile(`\{([a-z]+)\}`)
	for _, r := range s.console.Routes() {
		e.Add(r.Method, param.ReplaceAllString(r.Path, ":$1"), h)
	}
	e.Any("/console/*", h)
}
