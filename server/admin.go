package server

import (
	"net/http"
	"strconv"
	"time"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/auth"
	"github.com/doorstep-health/doorstep/crdt"
	"github.com/labstack/echo/v4"
)

// TeamRequest is the body of POST /v1/admin/teams.
type TeamRequest struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

// UserRequest is the body of POST /v1/admin/users.
type UserRequest struct {
	Username string   `json:"username"`
	Name     string   `json:"name"`
	Password string   `json:"password"`
	Role     string   `json:"role"`
	Teams    []string `json:"teams"`
}

// UserPatch is the body of PATCH /v1/admin/users/:id; absent fields are
// left as they are. Present fields are applied in this order, each in its
// own transaction with its own audit entry: teams, role, name, password,
// disabled.
type UserPatch struct {
	Role  *string   `json:"role"`
	Teams *[]string `json:"teams"`
	Name  *string   `json:"name"`
	// Password, set by an admin, resets the user's password and ends the
	// sessions of all the user's devices.
	Password *string `json:"password"`
	// Disabled disables (true) or enables (false) the account.
	Disabled *bool `json:"disabled"`
}

// QuarantineEntry is one quarantined op as GET /v1/admin/quarantine lists it.
type QuarantineEntry struct {
	ID           uint64    `json:"id"`
	Op           OpJSON    `json:"op"`
	Author       string    `json:"author"`
	Device       string    `json:"device"`
	Seq          uint64    `json:"seq"`
	Code         api.Code  `json:"code"`
	Reason       string    `json:"reason"`
	Received     time.Time `json:"received"`
	Reapplicable bool      `json:"reapplicable"`
	// Count is the ops the entry stands for (a summary of refused ops
	// carries no values); Bytes their value bytes; Expires when the entry
	// is dropped.
	Count   int       `json:"count"`
	Bytes   int       `json:"bytes"`
	Expires time.Time `json:"expires"`
}

// actorOf returns the request's actor (set by authenticate).
func actorOf(c echo.Context) auth.Actor { return auth.ActorFrom(c.Request().Context()) }

func (s *Server) createTeam(c echo.Context) error {
	var req TeamRequest
	if err := s.bindJSON(c, &req); err != nil {
		return err
	}
	t, err := s.auth.CreateTeam(c.Request().Context(), req.ID, req.Name)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, t)
}

// listTeams lists the admin's teams.
func (s *Server) listTeams(c echo.Context) error {
	ts, err := s.auth.Teams(c.Request().Context())
	if err != nil {
		return err
	}
	a := actorOf(c)
	out := []auth.Team{}
	for _, t := range ts {
		if a.SeesTeam(t.ID) {
			out = append(out, t)
		}
	}
	return c.JSON(http.StatusOK, map[string]any{"teams": out})
}

func (s *Server) createUser(c echo.Context) error {
	var req UserRequest
	if err := s.bindJSON(c, &req); err != nil {
		return err
	}
	u, err := s.auth.CreateUser(c.Request().Context(), auth.NewUser{
		Username: req.Username, Name: req.Name, Password: req.Password, Role: req.Role, Teams: req.Teams,
	})
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, u)
}

// listUsers lists the users the admin sees; deleted users only with
// ?deleted=true.
func (s *Server) listUsers(c echo.Context) error {
	us, err := s.auth.Users(c.Request().Context())
	if err != nil {
		return err
	}
	a, withDeleted := actorOf(c), c.QueryParam("deleted") == "true"
	out := []auth.User{}
	for _, u := range us {
		if a.Sees(u) && (withDeleted || !u.Deleted) {
			out = append(out, u)
		}
	}
	return c.JSON(http.StatusOK, map[string]any{"users": out})
}

// getUser answers one user the admin sees.
func (s *Server) getUser(c echo.Context) error {
	u, err := s.auth.User(c.Request().Context(), c.Param("id"))
	if err != nil {
		return err
	}
	if !actorOf(c).Sees(u) {
		return problemf(api.CodeNotFound, "no such user")
	}
	return c.JSON(http.StatusOK, u)
}

func (s *Server) patchUser(c echo.Context) error {
	var p UserPatch
	if err := s.bindJSON(c, &p); err != nil {
		return err
	}
	ctx, id := c.Request().Context(), c.Param("id")
	if p.Role == nil && p.Teams == nil && p.Name == nil && p.Password == nil && p.Disabled == nil {
		return problemf(api.CodeBadRequest, "nothing to change: give role, teams, name, password and/or disabled")
	}
	var (
		u   auth.User
		err error
	)
	steps := []struct {
		set bool
		do  func() (auth.User, error)
	}{
		{p.Teams != nil, func() (auth.User, error) { return s.auth.SetTeams(ctx, id, *p.Teams) }},
		{p.Role != nil, func() (auth.User, error) { return s.auth.SetRole(ctx, id, *p.Role) }},
		{p.Name != nil, func() (auth.User, error) { return s.auth.SetName(ctx, id, *p.Name) }},
		{p.Password != nil, func() (auth.User, error) { return s.auth.ResetPassword(ctx, id, *p.Password) }},
		{p.Disabled != nil, func() (auth.User, error) { return s.auth.SetDisabled(ctx, id, *p.Disabled) }},
	}
	for _, st := range steps {
		if !st.set {
			continue
		}
		if u, err = st.do(); err != nil {
			return err
		}
	}
	return c.JSON(http.StatusOK, u)
}

// deleteUser deletes a leaver (see auth.Service.DeleteUser) and answers the
// tombstone.
func (s *Server) deleteUser(c echo.Context) error {
	u, err := s.auth.DeleteUser(c.Request().Context(), c.Param("id"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, u)
}

func (s *Server) listDevices(c echo.Context) error {
	ds, err := s.auth.Devices(c.Request().Context(), c.Param("id"))
	if err != nil {
		return err
	}
	if ds == nil {
		ds = []auth.Device{}
	}
	return c.JSON(http.StatusOK, map[string]any{"devices": ds})
}

func (s *Server) revokeDevice(c echo.Context) error {
	r, err := crdt.ParseReplicaID(c.Param("id"))
	if err != nil {
		return problemf(api.CodeNotFound, "no such device")
	}
	opt, err := s.revokeOptions(c)
	if err != nil {
		return err
	}
	revoke := s.auth.RevokeDevice
	if opt.Wipe {
		revoke = s.auth.RevokeAndWipe
	}
	d, err := revoke(c.Request().Context(), r)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, d)
}

// listQuarantine lists the quarantined ops of the admin's teams, paged by
// ?after= (the previous reply's next_cursor).
func (s *Server) listQuarantine(c echo.Context) error {
	limit, err := queryInt(c, "limit", 100, 1000)
	if err != nil {
		return err
	}
	after, err := queryCursor(c, "after")
	if err != nil {
		return err
	}
	qs, next, more, err := s.engine.QuarantinedIn(c.Request().Context(), actorOf(c).Teams, after, limit)
	if err != nil {
		return err
	}
	out := make([]QuarantineEntry, 0, len(qs))
	for _, q := range qs {
		out = append(out, QuarantineEntry{
			ID: q.ID, Op: opJSON(&q.Op), Author: q.Author, Device: q.Replica.String(), Seq: q.Seq,
			Code: q.Code, Reason: q.Reason, Received: q.Received.UTC(), Reapplicable: q.Reapplicable,
			Count: q.Count, Bytes: q.Bytes, Expires: q.Expires.UTC(),
		})
	}
	return c.JSON(http.StatusOK, map[string]any{"ops": out, "next_cursor": strconv.FormatUint(next, 10), "more": more})
}

// reapply re-applies a quarantined op of one of the admin's teams; an op
// of another team answers 404, as an unknown one does.
func (s *Server) reapply(c echo.Context) error {
	id, err := strconv.ParseUint(c.Param("id"), 10, 64)
	if err != nil {
		return problemf(api.CodeNotFound, "no such quarantine entry")
	}
	ctx := c.Request().Context()
	q, err := s.engine.QuarantinedByID(ctx, id)
	if err != nil {
		return err
	}
	if !claimsOf(c).InTeam(q.Op.Team) {
		return problemf(api.CodeNotFound, "no such quarantine entry")
	}
	if err := s.engine.Reapply(ctx, id); err != nil {
		return err
	}
	s.audit(c, auth.AuditEntry{Action: "quarantine.reapply", Team: q.Op.Team, TargetKind: "quarantine", TargetID: strconv.FormatUint(id, 10),
		Detail: map[string]string{"op": opIDString(q.Op.ID), "record": q.Op.Collection + "/" + q.Op.Record, "field": q.Op.Field, "author": q.Author, "code": string(q.Code)}})
	return c.JSON(http.StatusOK, map[string]any{"id": id, "status": "applied"})
}

// queryCursor reads an optional decimal cursor.
func queryCursor(c echo.Context, name string) (uint64, error) {
	v := c.QueryParam(name)
	if v == "" {
		return 0, nil
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return 0, problemf(api.CodeBadRequest, "%s must be a cursor from a previous reply", name)
	}
	return n, nil
}

// queryInt reads an optional integer query parameter in [1, max].
func queryInt(c echo.Context, name string, def, max int) (int, error) {
	v := c.QueryParam(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		return 0, problemf(api.CodeBadRequest, "%s must be a positive integer", name)
	}
	return min(n, max), nil
}
