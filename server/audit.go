package server

import (
	"encoding/csv"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/auth"
	"github.com/labstack/echo/v4"
)

// audit records an action of the request's actor in the audit trail. An
// entry naming no team concerns the actor's teams, so that their admins read
// it. A failure to record is logged as an error: the action has happened and
// is not undone. Reads of a person's record use auditRead, which fails
// closed.
func (s *Server) audit(c echo.Context, e auth.AuditEntry) {
	if a := actorOf(c); e.Team == "" && len(e.Teams) == 0 && len(a.Teams) > 0 {
		e.Team, e.Teams = a.Teams[0], a.Teams[1:]
	}
	if err := s.auth.Audit(c.Request().Context(), e); err != nil {
		s.log.Error("audit entry not recorded", "action", e.Action, "team", e.Team, "target", e.TargetID, "err", err)
	}
}

// auditRead records a read of a record before its contents are sent; if
// the entry cannot be recorded the read is refused.
func (s *Server) auditRead(c echo.Context, action string, ref api.RecordRef) error {
	err := s.auth.Audit(c.Request().Context(), auth.AuditEntry{Action: action, Team: ref.Team, TargetKind: "record", TargetID: ref.Collection + "/" + ref.ID})
	if err != nil {
		return &Error{Code: api.CodeUnavailable, Detail: "audit trail not writable; read refused", Err: err}
	}
	return nil
}

// auditAdmin records one line for every admin request, whatever the route
// (so a route added later is covered too): "admin.read" for a successful
// GET, "admin.request" for another success, "admin.refused" for a refused or
// failed request, with the method, route, path parameters and outcome. A
// change also has its own entry, with what changed, written by the change.
func (s *Server) auditAdmin(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		err := next(c)
		action := "admin.read"
		if c.Request().Method != http.MethodGet {
			action = "admin.request"
		}
		e := auth.AuditEntry{Action: action, Detail: map[string]string{"method": c.Request().Method, "route": c.Path()}}
		for _, name := range c.ParamNames() {
			e.Detail["param_"+name] = c.Param(name)
		}
		if err != nil {
			e.Action = "admin.refused"
			e.Detail["code"] = string(classify(err).Code)
		}
		s.audit(c, e)
		return err
	}
}

// AuditPage is the JSON reply of GET /v1/admin/audit.
type AuditPage struct {
	Entries []auth.AuditEntry `json:"entries"`
	// NextCursor is passed as ?cursor= for the next page.
	NextCursor string `json:"next_cursor"`
	// More says whether the trail has entries past NextCursor.
	More bool `json:"more"`
}

// listAudit serves GET /v1/admin/audit: the entries concerning the admin's
// teams, filtered by ?actor=, ?action= (exact, or a prefix ending in '.'),
// ?team=, ?since= (RFC 3339), paged by ?cursor= and ?limit=, as JSON or,
// with ?format=csv, as CSV (the next cursor in the Doorstep-Next-Cursor
// header).
func (s *Server) listAudit(c echo.Context) error {
	limit, err := queryInt(c, "limit", 100, 1000)
	if err != nil {
		return err
	}
	after, err := queryCursor(c, "cursor")
	if err != nil {
		return err
	}
	q := auth.AuditQuery{After: after, Limit: limit, Scope: claimsOf(c).Teams,
		Team: c.QueryParam("team"), Actor: c.QueryParam("actor"), Action: c.QueryParam("action")}
	if q.Scope == nil {
		q.Scope = []string{}
	}
	if v := c.QueryParam("since"); v != "" {
		if q.Since, err = time.Parse(time.RFC3339Nano, v); err != nil {
			return problemf(api.CodeBadRequest, "since must be an RFC 3339 time")
		}
	}
	format := c.QueryParam("format")
	if format != "" && format != "json" && format != "csv" {
		return problemf(api.CodeBadRequest, "format must be json or csv")
	}
	entries, next, more, err := s.auth.AuditLog(c.Request().Context(), q)
	if err != nil {
		return err
	}
	cursor := strconv.FormatUint(next, 10)
	if format != "csv" {
		return c.JSON(http.StatusOK, AuditPage{Entries: entries, NextCursor: cursor, More: more})
	}
	h := c.Response().Header()
	h.Set(echo.HeaderContentType, "text/csv; charset=utf-8")
	h.Set("Content-Disposition", `attachment; filename="doorstep-audit.csv"`)
	h.Set("Doorstep-Next-Cursor", cursor)
	h.Set("Doorstep-More", strconv.FormatBool(more))
	c.Response().WriteHeader(http.StatusOK)
	w := csv.NewWriter(c.Response())
	_ = w.Write(auditCSVHeader)
	for i := range entries {
		_ = w.Write(auditCSVRow(&entries[i]))
	}
	w.Flush()
	return w.Error()
}

var auditCSVHeader = []string{"seq", "time", "actor_id", "actor_name", "actor_role", "device", "action", "team", "teams", "target_kind", "target_id", "detail"}

func auditCSVRow(e *auth.AuditEntry) []string {
	detail := ""
	if len(e.Detail) > 0 {
		b, _ := json.Marshal(e.Detail)
		detail = string(b)
	}
	row := []string{strconv.FormatUint(e.Seq, 10), e.Time.UTC().Format(time.RFC3339Nano), e.ActorID, e.ActorName, e.ActorRole, e.Device,
		e.Action, e.Team, strings.Join(e.Teams, ";"), e.TargetKind, e.TargetID, detail}
	for i, v := range row {
		row[i] = csvSafe(v)
	}
	return row
}

// csvSafe keeps a spreadsheet from reading a cell as a formula.
func csvSafe(v string) string {
	if v != "" && strings.ContainsRune("=+-@\t\r", rune(v[0])) {
		return "'" + v
	}
	return v
}
