package server

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/auth"
	dsync "github.com/doorstep-health/doorstep/sync"
	"github.com/labstack/echo/v4"
)

// ErasureRequest is the body of POST /v1/admin/erasures.
type ErasureRequest struct {
	Team       string `json:"team"`
	Collection string `json:"collection"`
	ID         string `json:"id"`
	// Cascade, for a people record, also erases the team's records that
	// reference the person (see sync.PersonRefFields).
	Cascade bool `json:"cascade"`
}

// ErasureReport is the reply to POST /v1/admin/erasures: what was erased.
type ErasureReport struct {
	Records             []api.RecordRef `json:"records"`
	Ops                 int             `json:"ops"`
	LogEntriesRewritten int             `json:"log_entries_rewritten"`
	LogEntriesDeleted   int             `json:"log_entries_deleted"`
	QuarantinedDeleted  int             `json:"quarantined_deleted"`
	Position            uint64          `json:"position"`
	AlreadyErased       bool            `json:"already_erased"`
	// Scrubbed: no version of the erased values is left in the data files
	// (see docs/OPERATIONS.md "Erasure on disk"). ScrubPending: a backup
	// was running; the values leave the disk when it ends.
	Scrubbed     bool `json:"scrubbed"`
	ScrubPending bool `json:"scrub_pending,omitempty"`
}

// erase handles POST /v1/admin/erasures (admins only, and only for a team
// the admin belongs to). Every attempt is audit-logged with IDs only: who,
// which record, when, and what was removed.
func (s *Server) erase(c echo.Context) error {
	var req ErasureRequest
	if err := s.bindJSON(c, &req); err != nil {
		return err
	}
	if req.Team == "" || req.Collection == "" || req.ID == "" {
		return problemf(api.CodeBadRequest, "team, collection and id are required")
	}
	if !claimsOf(c).InTeam(req.Team) {
		return problemf(api.CodeForbidden, "not a member of this team")
	}
	caller := callerOf(c)
	ref := api.RecordRef{Team: req.Team, Collection: req.Collection, ID: req.ID}
	audit := s.log.With("audit", "erasure", "admin", caller.User, "device", caller.Replica.String(),
		"team", ref.Team, "collection", ref.Collection, "id", ref.ID, "cascade", req.Cascade,
		"request_id", c.Response().Header().Get(echo.HeaderXRequestID), "at", time.Now().UTC())
	rep, err := s.engine.Erase(c.Request().Context(), caller, ref, req.Cascade)
	if err != nil {
		audit.Warn("erasure failed", "err", err)
		return err
	}
	if err := s.journalErasures(rep.Records); err != nil {
		// The erasure is done and durable; without its journal line a
		// restore of an older backup would not re-apply it. Say so.
		audit.Error("erasure done but not journalled", "err", err)
		return &Error{Code: api.CodeInternal, Detail: "the record was erased, but writing the erasure journal failed: tell the operator", Err: err}
	}
	audit.Info("erasure done", "records", len(rep.Records), "ops", rep.Ops,
		"quarantined", rep.Quarantined, "position", rep.Position, "already_erased", rep.AlreadyErased)
	s.audit(c, erasureAudit(ref, req.Cascade, &rep))
	out := ErasureReport{
		Records: rep.Records, Ops: rep.Ops, LogEntriesRewritten: rep.EntriesRewritten, LogEntriesDeleted: rep.EntriesDeleted,
		QuarantinedDeleted: rep.Quarantined, Position: rep.Position, AlreadyErased: rep.AlreadyErased,
		Scrubbed: rep.Scrubbed, ScrubPending: rep.ScrubPending,
	}
	if out.Records == nil {
		out.Records = []api.RecordRef{}
	}
	return c.JSON(http.StatusOK, out)
}

// erasureAudit is the audit entry of an erasure: the record, the records
// erased and the counts, never contents.
func erasureAudit(ref api.RecordRef, cascade bool, rep *dsync.ErasureReport) auth.AuditEntry {
	var recs []string
	for _, r := range rep.Records {
		recs = append(recs, r.Collection+"/"+r.ID)
	}
	if len(recs) > 20 {
		recs = append(recs[:20], "…")
	}
	return auth.AuditEntry{Action: "record.erase", Team: ref.Team, TargetKind: "record", TargetID: ref.Collection + "/" + ref.ID,
		Detail: map[string]string{
			"cascade": strconv.FormatBool(cascade), "records": strconv.Itoa(len(rep.Records)), "erased": strings.Join(recs, ","),
			"ops": strconv.Itoa(rep.Ops), "quarantined": strconv.Itoa(rep.Quarantined), "already_erased": strconv.FormatBool(rep.AlreadyErased),
		}}
}
