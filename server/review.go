package server

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/auth"
	"github.com/doorstep-health/doorstep/crdt"
	dsync "github.com/doorstep-health/doorstep/sync"
	"github.com/labstack/echo/v4"
	"github.com/vmihailenco/msgpack/v5"
)

// RecordJSON is a merged record as the review API shows it.
type RecordJSON struct {
	Team            string                `json:"team"`
	Collection      string                `json:"collection"`
	ID              string                `json:"id"`
	Deleted         bool                  `json:"deleted"`
	DeleteConflicts []string              `json:"delete_conflicts"`
	Conflicts       []string              `json:"conflicts"`
	Fields          map[string]*FieldJSON `json:"fields"`
}

// FieldJSON is one field of a merged record. For a register, Value is the
// winning value and Values (when Conflict) every concurrent value; for a set,
// Value is the list of members; for a log, Values lists the entries oldest
// first and Value is omitted.
type FieldJSON struct {
	Type     string      `json:"type"`
	Value    any         `json:"value,omitempty"`
	Conflict bool        `json:"conflict"`
	Values   []ValueJSON `json:"values,omitempty"`
	Clinical bool        `json:"clinical,omitempty"`
}

// ValueJSON is one live entry of a field, attributed.
type ValueJSON struct {
	Op         string    `json:"op"`                    // op ID: 48 hex digits (24-byte binary form)
	Value      any       `json:"value"`                 // decoded from msgpack
	Author     string    `json:"author"`                // user ID, from the pusher's token
	AuthorName string    `json:"author_name,omitempty"` // the user's display name
	Time       time.Time `json:"time"`                  // HLC physical time of the op
	Device     string    `json:"device"`                // replica ID
}

// HistoryJSON is one merged op of a record's history.
type HistoryJSON struct {
	Op         string    `json:"op"`
	Field      string    `json:"field"`
	Kind       string    `json:"kind"`
	Value      any       `json:"value,omitempty"`
	Pred       []string  `json:"pred,omitempty"`
	Author     string    `json:"author"`
	AuthorName string    `json:"author_name,omitempty"`
	Device     string    `json:"device"`
	Time       time.Time `json:"time"`
	Received   time.Time `json:"received"`
	Reason     string    `json:"reason,omitempty"` // a resolution's reason
}

// OpJSON is an op in JSON, as the quarantine list shows it.
type OpJSON struct {
	ID         string   `json:"id"`
	Team       string   `json:"team"`
	Collection string   `json:"collection"`
	Record     string   `json:"record"`
	Field      string   `json:"field"`
	Kind       string   `json:"kind"`
	Value      any      `json:"value,omitempty"`
	Pred       []string `json:"pred,omitempty"`
	Device     string   `json:"device"`
	Time       string   `json:"time"`
}

// ResolveRequest is the body of POST .../resolve: the value (any JSON) to
// write to a register field, overwriting every concurrent value. For the
// field "_deleted" the value must be a JSON boolean: true deletes the
// record, false restores it, either way settling a delete conflict.
type ResolveRequest struct {
	Field string          `json:"field"`
	Value json.RawMessage `json:"value"`
	// Reason, optional (the console requires one for a clinical field),
	// is kept with the resolution in the record's history and recorded in
	// the audit trail: why this value was chosen.
	Reason string `json:"reason,omitempty"`
}

func opIDString(id crdt.OpID) string { return hex.EncodeToString(id.AppendBinary(nil)) }

func opJSON(op *crdt.Op) OpJSON {
	o := OpJSON{
		ID: opIDString(op.ID), Team: op.Team, Collection: op.Collection, Record: op.Record,
		Field: op.Field, Kind: op.Kind.String(), Device: op.ID.Replica.String(), Time: op.ID.Time.String(),
	}
	if len(op.Value) > 0 {
		o.Value = decodeValue(op.Value)
	}
	for _, p := range op.Pred {
		o.Pred = append(o.Pred, opIDString(p))
	}
	return o
}

// decodeValue turns a stored msgpack value into a JSON-encodable value. A
// value that does not decode is shown as its hex bytes.
func decodeValue(raw msgpack.RawMessage) (v any) {
	defer func() {
		if recover() != nil {
			v = map[string]string{"msgpack_hex": hex.EncodeToString(raw)}
		}
	}()
	var x any
	if err := msgpack.Unmarshal(raw, &x); err != nil {
		return map[string]string{"msgpack_hex": hex.EncodeToString(raw)}
	}
	return jsonable(x)
}

func jsonable(x any) any {
	switch t := x.(type) {
	case map[string]any:
		for k, v := range t {
			t[k] = jsonable(v)
		}
		return t
	case map[any]any:
		m := make(map[string]any, len(t))
		for k, v := range t {
			m[fmt.Sprint(k)] = jsonable(v)
		}
		return m
	case []any:
		for i, v := range t {
			t[i] = jsonable(v)
		}
		return t
	}
	return x
}

func (s *Server) recordRef(c echo.Context) api.RecordRef {
	return api.RecordRef{Team: c.Param("team"), Collection: c.Param("collection"), ID: c.Param("id")}
}

func (s *Server) clinical(collection, field string) bool {
	if s.cfg.NoSchema {
		return false
	}
	return s.cfg.Schema.Clinical(collection, field)
}

// recordJSON builds the review form of a record; authors come from the
// record's history.
func (s *Server) recordJSON(ctx context.Context, rec *crdt.Record, hist []dsync.HistoryEntry) *RecordJSON {
	authors := make(map[crdt.OpID]string, len(hist))
	for _, h := range hist {
		authors[h.Op.ID] = h.Author
	}
	names := s.userNames(ctx)
	entry := func(e crdt.Entry) ValueJSON {
		a := authors[e.ID]
		return ValueJSON{Op: opIDString(e.ID), Value: decodeValue(e.Value), Author: a, AuthorName: names[a], Time: e.ID.Time.Time(), Device: e.ID.Replica.String()}
	}
	out := &RecordJSON{
		Team: rec.Team, Collection: rec.Collection, ID: rec.ID, Deleted: rec.Deleted(),
		DeleteConflicts: nonNil(rec.DeleteConflicts()), Conflicts: nonNil(rec.Conflicts()),
		Fields: map[string]*FieldJSON{},
	}
	for _, name := range rec.FieldNames() {
		f := rec.Fields[name]
		fj := &FieldJSON{Type: f.Type.String(), Conflict: f.Conflict(), Clinical: s.clinical(rec.Collection, name)}
		switch f.Type {
		case crdt.Register:
			if w, ok := f.Winner(); ok {
				fj.Value = decodeValue(w.Value)
			}
			if fj.Conflict {
				for _, e := range f.Entries {
					fj.Values = append(fj.Values, entry(e))
				}
			}
		case crdt.Set:
			members := []any{}
			for _, m := range f.Members() {
				members = append(members, decodeValue(m))
			}
			fj.Value = members
		case crdt.Log:
			for _, e := range f.Entries {
				fj.Values = append(fj.Values, entry(e))
			}
		}
		out.Fields[name] = fj
	}
	return out
}

// userNames maps user IDs to display names, for attributing values; on an
// error it returns an empty map (the IDs are still shown).
func (s *Server) userNames(ctx context.Context) map[string]string {
	users, err := s.auth.Users(ctx)
	if err != nil {
		s.log.Warn("user names for review", "err", err)
		return map[string]string{}
	}
	m := make(map[string]string, len(users))
	for _, u := range users {
		m[u.ID] = u.Name
	}
	return m
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// recordRefsReply answers {"records": refs}, with an empty list rather than
// null when there are none.
func recordRefsReply(c echo.Context, refs []api.RecordRef) error {
	if refs == nil {
		refs = []api.RecordRef{}
	}
	return c.JSON(http.StatusOK, map[string]any{"records": refs})
}

func (s *Server) getRecord(c echo.Context) error {
	ctx, caller, ref := c.Request().Context(), callerOf(c), s.recordRef(c)
	rec, err := s.engine.Record(ctx, caller, ref)
	if err != nil {
		return err
	}
	hist, err := s.engine.History(ctx, caller, ref)
	if err != nil {
		return err
	}
	if err := s.auditRead(c, "record.read", ref); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, s.recordJSON(ctx, rec, hist))
}

func (s *Server) getHistory(c echo.Context) error {
	limit, err := queryInt(c, "limit", dsync.DefaultHistoryLimit, dsync.MaxHistoryLimit)
	if err != nil {
		return err
	}
	var after uint64
	if v := c.QueryParam("after"); v != "" {
		if after, err = strconv.ParseUint(v, 10, 64); err != nil {
			return problemf(api.CodeBadRequest, "after must be a position from a previous page's next")
		}
	}
	hist, next, err := s.engine.HistoryPage(c.Request().Context(), callerOf(c), s.recordRef(c), after, limit)
	if err != nil {
		return err
	}
	if err := s.auditRead(c, "record.history_read", s.recordRef(c)); err != nil {
		return err
	}
	out := make([]HistoryJSON, 0, len(hist))
	names := s.userNames(c.Request().Context())
	for _, h := range hist {
		hj := HistoryJSON{
			Op: opIDString(h.Op.ID), Field: h.Op.Field, Kind: h.Op.Kind.String(), Author: h.Author, AuthorName: names[h.Author],
			Device: h.Op.ID.Replica.String(), Time: h.Op.ID.Time.Time(), Received: h.Received.UTC(), Reason: h.Reason,
		}
		if len(h.Op.Value) > 0 {
			hj.Value = decodeValue(h.Op.Value)
		}
		for _, p := range h.Op.Pred {
			hj.Pred = append(hj.Pred, opIDString(p))
		}
		out = append(out, hj)
	}
	reply := map[string]any{"history": out}
	if next != 0 {
		reply["next"] = strconv.FormatUint(next, 10)
	}
	return c.JSON(http.StatusOK, reply)
}

func (s *Server) listConflicts(c echo.Context) error {
	refs, err := s.engine.Conflicts(c.Request().Context(), callerOf(c), c.Param("team"))
	if err != nil {
		return err
	}
	return recordRefsReply(c, refs)
}

func (s *Server) resolve(c echo.Context) error {
	var req ResolveRequest
	if err := s.bindJSON(c, &req); err != nil {
		return err
	}
	if req.Field == "" || len(req.Value) == 0 {
		return problemf(api.CodeBadRequest, "field and value are required")
	}
	if len(req.Reason) > 500 {
		return problemf(api.CodeBadRequest, "reason must be at most 500 bytes")
	}
	if req.Field == crdt.DeletedField {
		// Settles a delete conflict: true deletes, false restores, having
		// seen every live entry.
		if v := string(bytes.TrimSpace(req.Value)); v != "true" && v != "false" {
			return problemf(api.CodeBadRequest, "%s takes a JSON boolean: true deletes, false restores", crdt.DeletedField)
		}
	}
	val, err := api.ValueFromJSON(req.Value)
	if err != nil {
		return problemf(api.CodeMalformedBody, "value: %v", err)
	}
	ctx, caller, ref := c.Request().Context(), callerOf(c), s.recordRef(c)
	rec, err := s.engine.ResolveWithReason(ctx, caller, ref, req.Field, val, req.Reason)
	if err != nil {
		return err
	}
	hist, err := s.engine.History(ctx, caller, ref)
	if err != nil {
		return err
	}
	s.audit(c, resolveAudit(ref, req, caller.User, hist))
	return c.JSON(http.StatusOK, s.recordJSON(ctx, rec, hist))
}

// resolveAudit is the audit entry of a resolution: the op written and the
// op IDs of the values it settled (its pred), found as the newest op on
// the field by the resolving user, and the reason. Values themselves are
// not recorded.
func resolveAudit(ref api.RecordRef, req ResolveRequest, user string, hist []dsync.HistoryEntry) auth.AuditEntry {
	e := auth.AuditEntry{Action: "record.resolve", Team: ref.Team, TargetKind: "record", TargetID: ref.Collection + "/" + ref.ID,
		Detail: map[string]string{"field": req.Field}}
	if req.Reason != "" {
		e.Detail["reason"] = req.Reason
	}
	for i := len(hist) - 1; i >= 0; i-- {
		h := hist[i]
		if h.Author != user || h.Op.Field != req.Field {
			continue
		}
		e.Detail["op"] = opIDString(h.Op.ID)
		var settled []string
		for _, p := range h.Op.Pred {
			settled = append(settled, opIDString(p))
		}
		if len(settled) > 20 {
			e.Detail["settled_count"] = strconv.Itoa(len(settled))
			settled = settled[:20]
		}
		e.Detail["settled_ops"] = strings.Join(settled, ",")
		break
	}
	return e
}
