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
// left as they are.
type UserPatch struct {
	Role  *string   `json:"role"`
	Teams *[]string `json:"teams"`
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

func (s *Server) listTeams(c echo.Context) error {
	ts, err := s.auth.Teams(c.Request().Context())
	if err != nil {
		return err
	}
	if ts == nil {
		ts = []auth.Team{}
	}
	return c.JSON(http.StatusOK, map[string]any{"teams": ts})
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

func (s *Server) listUsers(c echo.Context) error {
	us, err := s.auth.Users(c.Request().Context())
	if err != nil {
		return err
	}
	if us == nil {
		us = []auth.User{}
	}
	return c.JSON(http.StatusOK, map[string]any{"users": us})
}

func (s *Server) patchUser(c echo.Context) error {
	var p UserPatch
	if err := s.bindJSON(c, &p); err != nil {
		return err
	}
	ctx, id := c.Request().Context(), c.Param("id")
	if p.Role == nil && p.Teams == nil {
		return problemf(api.CodeBadRequest, "nothing to change: give role and/or teams")
	}
	var (
		u   auth.User
		err error
	)
	if p.Role != nil {
		if u, err = s.auth.SetRole(ctx, id, *p.Role); err != nil {
			return err
		}
	}
	if p.Teams != nil {
		if u, err = s.auth.SetTeams(ctx, id, *p.Teams); err != nil {
			return err
		}
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
	d, err := s.auth.RevokeDevice(c.Request().Context(), r)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, d)
}

func (s *Server) listQuarantine(c echo.Context) error {
	limit, err := queryInt(c, "limit", 100, 1000)
	if err != nil {
		return err
	}
	qs, err := s.engine.Quarantined(c.Request().Context(), limit)
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
	return c.JSON(http.StatusOK, map[string]any{"ops": out})
}

func (s *Server) reapply(c echo.Context) error {
	id, err := strconv.ParseUint(c.Param("id"), 10, 64)
	if err != nil {
		return problemf(api.CodeNotFound, "no such quarantine entry")
	}
	if err := s.engine.Reapply(c.Request().Context(), id); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"id": id, "status": "applied"})
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
