package web

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/auth/identity"
	"github.com/doorstep-health/doorstep/crdt"
	"github.com/doorstep-health/doorstep/schema"
	"github.com/doorstep-health/doorstep/sync/review"
)

func opHex(id crdt.OpID) string { return hex.EncodeToString(id.AppendBinary(nil)) }

func refOf(r *http.Request) api.RecordRef {
	return api.RecordRef{Team: r.PathValue("team"), Collection: r.PathValue("collection"), ID: r.PathValue("id")}
}

// recordLabel names a record for people: a person by name, anything else
// by collection and short ID.
func recordLabel(rec *crdt.Record) string {
	if rec == nil {
		return ""
	}
	if rec.Collection == "people" {
		name := strings.TrimSpace(regString(rec, "given_name") + " " + regString(rec, "family_name"))
		if name != "" {
			return name
		}
	}
	return rec.Collection + " " + shortID(rec.ID)
}

func regString(rec *crdt.Record, field string) string {
	if w, ok := rec.Field(field).Winner(); ok {
		if s, ok := decode(w.Value).(string); ok {
			return s
		}
	}
	return ""
}

// people is the attribution context of a page: users by ID and device
// names by replica.
type people struct {
	users   map[string]identity.User
	devices map[string]string
	server  string
}

func (c *Console) people(ctx context.Context, withDevices bool) *people {
	p := &people{users: c.names(ctx), devices: map[string]string{}, server: c.cfg.Engine.ServerReplica().String()}
	if withDevices {
		for id := range p.users {
			ds, err := c.cfg.Auth.Devices(ctx, id)
			if err != nil {
				continue
			}
			for _, d := range ds {
				p.devices[d.ID] = d.Name
			}
		}
	}
	return p
}

func (p *people) name(id string) string {
	if u, ok := p.users[id]; ok {
		return u.Name
	}
	if id == "" {
		return "unknown"
	}
	return "user " + shortID(id)
}

func (p *people) role(id string) string { return roleName(p.users[id].Role) }

func (p *people) device(r crdt.ReplicaID) string {
	id := r.String()
	switch {
	case id == p.server:
		return "Doorstep server (console or review API)"
	case p.devices[id] != "":
		return p.devices[id]
	}
	return "device " + shortID(id)
}

// teams: the teams the viewer works in.
func (c *Console) teams(w http.ResponseWriter, r *http.Request, v *viewer) {
	names := c.teamNames(r.Context())
	type row struct{ ID, Name string }
	var rows []row
	for _, t := range v.Teams {
		rows = append(rows, row{t, names[t]})
	}
	c.render(w, r, http.StatusOK, "teams", page{Title: "Your teams", Viewer: v, Data: rows})
}

type conflictRow struct {
	Ref      api.RecordRef
	Label    string
	Field    string
	Clinical bool
	Delete   bool // an edit concurrent with a delete
}

// conflictRows lists the fields in conflict of at most max records of the
// team's conflict index.
func (c *Console) conflictRows(ctx context.Context, v *viewer, team string, max int) ([]conflictRow, int, error) {
	refs, err := c.cfg.Engine.Conflicts(ctx, v.caller, team)
	if err != nil {
		return nil, 0, err
	}
	var rows []conflictRow
	for _, ref := range refs[:min(len(refs), max)] {
		rec, err := c.cfg.Engine.Record(ctx, v.caller, ref)
		if err != nil {
			if errors.Is(err, review.ErrNotFound) {
				continue
			}
			return nil, 0, err
		}
		for _, f := range rec.Conflicts() {
			rows = append(rows, conflictRow{Ref: ref, Label: recordLabel(rec), Field: f, Clinical: c.sch.Clinical(ref.Collection, f)})
		}
		if len(rec.DeleteConflicts()) > 0 {
			rows = append(rows, conflictRow{Ref: ref, Label: recordLabel(rec), Field: crdt.DeletedField, Delete: true})
		}
	}
	// Clinical conflicts first: they wait for a coordinator.
	slices.SortStableFunc(rows, func(a, b conflictRow) int {
		switch {
		case a.Clinical && !b.Clinical:
			return -1
		case b.Clinical && !a.Clinical:
			return 1
		}
		return 0
	})
	return rows, len(refs), nil
}

type homeData struct {
	TeamName       string
	Conflicts      int
	Rows           []conflictRow
	Changed        int
	ChangedMore    bool
	Since          time.Time
	FirstVisit     bool
	Quarantined    int
	ShowQuarantine bool
}

// home is a team's home: what waits for the coordinator.
func (c *Console) home(w http.ResponseWriter, r *http.Request, v *viewer) {
	ctx, team := r.Context(), r.PathValue("team")
	rows, n, err := c.conflictRows(ctx, v, team, 10)
	if err != nil {
		c.failErr(w, r, v, err)
		return
	}
	d := homeData{TeamName: c.teamNames(ctx)[team], Conflicts: n, Rows: rows, Since: v.s.prevVisit[team]}
	if d.Since.IsZero() {
		d.FirstVisit = true
		d.Since = c.cfg.Now().Add(-7 * 24 * time.Hour)
	}
	if d.Changed, d.ChangedMore, err = c.cfg.Engine.CountChangedSince(ctx, v.caller, team, d.Since, 1000); err != nil {
		c.failErr(w, r, v, err)
		return
	}
	if v.Admin {
		d.ShowQuarantine = true
		qs, err := c.cfg.Engine.TeamQuarantine(ctx, []string{team}, 0)
		if err != nil {
			c.failErr(w, r, v, err)
			return
		}
		d.Quarantined = len(qs)
	}
	c.ss.visit(ctx, v.s.user.ID, team, c.cfg.Now())
	c.render(w, r, http.StatusOK, "home", page{Title: d.TeamName, Viewer: v, Team: team, Data: d})
}

func (c *Console) conflicts(w http.ResponseWriter, r *http.Request, v *viewer) {
	rows, n, err := c.conflictRows(r.Context(), v, r.PathValue("team"), 200)
	if err != nil {
		c.failErr(w, r, v, err)
		return
	}
	c.render(w, r, http.StatusOK, "conflicts", page{Title: "Conflicts", Viewer: v, Team: r.PathValue("team"), Data: struct {
		Rows  []conflictRow
		Total int
	}{rows, n}})
}

// valueView is one concurrent value as the conflict page shows it.
type valueView struct {
	Op, Value, Author, Role, Device string
	Time, Received                  time.Time
	Offline                         bool
	Late                            string
	Base                            []string
	Winner                          bool
}

type conflictData struct {
	Ref         api.RecordRef
	Label       string
	Field       string
	Description string
	Clinical    bool
	Values      []valueView
	Error       string
	Reason      string
	Typed       string
}

func (c *Console) conflictData(ctx context.Context, v *viewer, ref api.RecordRef, field string) (*conflictData, *review.FieldConflict, error) {
	fc, err := c.cfg.Engine.FieldConflict(ctx, v.caller, ref, field)
	if err != nil {
		return nil, nil, err
	}
	p := c.people(ctx, true)
	d := &conflictData{Ref: ref, Label: recordLabel(fc.Record), Field: field, Clinical: c.sch.Clinical(ref.Collection, field)}
	if f, ok := c.sch.Field(ref.Collection, field); ok {
		d.Description = f.Description
	}
	win, _ := fc.Record.Field(field).Winner()
	for _, cv := range fc.Values {
		vv := valueView{
			Op: opHex(cv.Entry.ID), Value: show(cv.Entry.Value), Author: p.name(cv.Author), Role: p.role(cv.Author),
			Device: p.device(cv.Entry.ID.Replica), Time: cv.Entry.ID.Time.Time(), Received: cv.Received, Offline: cv.Offline,
			Winner: cv.Entry.ID == win.ID,
		}
		if cv.Offline {
			vv.Late = ago(cv.Received.Sub(vv.Time))
		}
		for _, b := range cv.Base {
			vv.Base = append(vv.Base, show(b.Entry.Value)+" ("+p.name(b.Author)+")")
		}
		d.Values = append(d.Values, vv)
	}
	return d, fc, nil
}

// conflict shows one field's concurrent values side by side.
func (c *Console) conflict(w http.ResponseWriter, r *http.Request, v *viewer) {
	ref := refOf(r)
	d, _, err := c.conflictData(r.Context(), v, ref, r.PathValue("field"))
	if err != nil {
		c.failErr(w, r, v, err)
		return
	}
	if err := c.auditRead(r, ref); err != nil {
		c.fail(w, r, v, http.StatusServiceUnavailable, "The audit trail cannot be written just now, so the record is not shown. Try again shortly.")
		return
	}
	c.render(w, r, http.StatusOK, "conflict", page{Title: "Conflict: " + d.Field, Viewer: v, Team: ref.Team, Data: d})
}

// resolve settles a conflict with the chosen or typed value, as an op
// attributed to the coordinator, with their reason.
func (c *Console) resolve(w http.ResponseWriter, r *http.Request, v *viewer) {
	ctx, ref, field := r.Context(), refOf(r), r.PathValue("field")
	d, fc, err := c.conflictData(ctx, v, ref, field)
	if err != nil {
		c.failErr(w, r, v, err)
		return
	}
	d.Reason, d.Typed = strings.TrimSpace(r.PostFormValue("reason")), r.PostFormValue("value")
	again := func(msg string) {
		d.Error = msg
		c.render(w, r, http.StatusUnprocessableEntity, "conflict", page{Title: "Conflict: " + field, Viewer: v, Team: ref.Team, Data: d})
	}
	if len(fc.Values) == 0 {
		again("This field is no longer in conflict: someone settled it. Open the record to see the current value.")
		return
	}
	var value []byte
	switch choice := r.PostFormValue("choice"); {
	case choice == "new":
		if strings.TrimSpace(d.Typed) == "" {
			again("Type the new value, or pick one of the values above.")
			return
		}
		if value, err = typedValue(d.Typed); err != nil {
			again("That value cannot be stored: " + err.Error())
			return
		}
	case strings.HasPrefix(choice, "op:"):
		for _, cv := range fc.Values {
			if opHex(cv.Entry.ID) == strings.TrimPrefix(choice, "op:") {
				value = cv.Entry.Value
			}
		}
		if value == nil {
			again("The value you picked has changed since the page loaded; pick again.")
			return
		}
	default:
		again("Pick one of the values, or choose to type a new one.")
		return
	}
	if d.Clinical && d.Reason == "" {
		again("This is a clinical field: say why you chose this value. The reason is kept in the record's history.")
		return
	}
	if len(d.Reason) > review.MaxReasonLen {
		again(fmt.Sprintf("The reason is too long: at most %d characters.", review.MaxReasonLen))
		return
	}
	rec, err := c.cfg.Engine.ResolveWithReason(ctx, v.caller, ref, field, value, d.Reason)
	if err != nil {
		if errors.Is(err, review.ErrInvalid) {
			again("The value was not accepted: " + err.Error())
			return
		}
		c.failErr(w, r, v, err)
		return
	}
	// The audit entry names the op written and the values it settled,
	// never the values themselves.
	ae := api.AuditEntry{Action: "record.resolve", Team: ref.Team, TargetKind: "record", TargetID: ref.Collection + "/" + ref.ID,
		Detail: map[string]string{"field": field, "via": "console"}}
	if d.Reason != "" {
		ae.Detail["reason"] = d.Reason
	}
	if win, ok := rec.Field(field).Winner(); ok {
		ae.Detail["op"] = opHex(win.ID)
	}
	var settled []string
	for _, cv := range fc.Values {
		settled = append(settled, opHex(cv.Entry.ID))
	}
	ae.Detail["settled"] = strings.Join(settled[:min(len(settled), 20)], ",")
	_ = c.audit(r, ae) // the resolution is durable already; a failed entry is logged
	http.Redirect(w, r, "/console/teams/"+url.PathEscape(ref.Team)+"/records/"+url.PathEscape(ref.Collection)+"/"+url.PathEscape(ref.ID)+"?resolved="+url.QueryEscape(field), http.StatusSeeOther)
}

type histView struct {
	Kind, Value, Author, Role, Device, Reason string
	Time, Received                            time.Time
}

type fieldView struct {
	Name, Description, Type, Value string
	Conflict, Clinical             bool
	History                        []histView
	// Attachments are the files of an attachment field.
	Attachments []attView
}

type recordData struct {
	Ref     api.RecordRef
	Label   string
	Deleted bool
	Fields  []fieldView
	Linked  []linkView
}

type linkView struct {
	Collection string
	Refs       []api.RecordRef
}

// record shows a record's current fields, each with its history.
func (c *Console) record(w http.ResponseWriter, r *http.Request, v *viewer) {
	ctx, ref := r.Context(), refOf(r)
	rec, err := c.cfg.Engine.Record(ctx, v.caller, ref)
	if err != nil {
		c.failErr(w, r, v, err)
		return
	}
	if err := c.auditRead(r, ref); err != nil {
		c.fail(w, r, v, http.StatusServiceUnavailable, "The audit trail cannot be written just now, so the record is not shown. Try again shortly.")
		return
	}
	hist, err := c.cfg.Engine.History(ctx, v.caller, ref)
	if err != nil {
		c.failErr(w, r, v, err)
		return
	}
	p := c.people(ctx, true)
	byField := map[string][]histView{}
	for _, h := range hist {
		hv := histView{
			Kind: h.Op.Kind.String(), Value: show(h.Op.Value), Author: p.name(h.Author), Role: p.role(h.Author),
			Device: p.device(h.Op.ID.Replica), Time: h.Op.ID.Time.Time(), Received: h.Received, Reason: h.Reason,
		}
		byField[h.Op.Field] = append(byField[h.Op.Field], hv)
	}
	d := recordData{Ref: ref, Label: recordLabel(rec), Deleted: rec.Deleted()}
	order := rec.FieldNames()
	if col, ok := c.sch.Collection(ref.Collection); ok {
		var known []string
		for _, f := range col.Fields {
			if rec.Field(f.Name) != nil {
				known = append(known, f.Name)
			}
		}
		for _, n := range order {
			if !slices.Contains(known, n) {
				known = append(known, n)
			}
		}
		order = known
	}
	for _, name := range order {
		f := rec.Field(name)
		fv := fieldView{Name: name, Type: f.Type.String(), Conflict: f.Conflict(), Clinical: c.sch.Clinical(ref.Collection, name), History: byField[name]}
		if sf, ok := c.sch.Field(ref.Collection, name); ok {
			fv.Description = sf.Description
			if sf.Type == schema.TypeAttachment {
				fv.Attachments = c.attachmentViews(ctx, ref, name, f, p)
			}
		}
		switch f.Type {
		case crdt.Register:
			if fv.Conflict {
				var vals []string
				for _, e := range f.Entries {
					vals = append(vals, show(e.Value))
				}
				fv.Value = strings.Join(vals, " | ")
			} else if w, ok := f.Winner(); ok {
				fv.Value = show(w.Value)
			}
		case crdt.Set:
			var vals []string
			for _, m := range f.Members() {
				vals = append(vals, show(m))
			}
			fv.Value = strings.Join(vals, ", ")
		case crdt.Log:
			fv.Value = plural(len(f.Entries), "entry")
			if len(f.Entries) != 1 {
				fv.Value = strings.TrimSuffix(fv.Value, "ys") + "ies"
			}
		}
		d.Fields = append(d.Fields, fv)
	}
	if ref.Collection == "people" {
		links, err := c.cfg.Engine.Linked(ctx, v.caller, ref)
		if err != nil {
			c.failErr(w, r, v, err)
			return
		}
		for _, coll := range c.sch.Collections() {
			var refs []api.RecordRef
			for _, l := range links {
				if l.Collection == coll.Name {
					refs = append(refs, l)
				}
			}
			if len(refs) > 0 {
				d.Linked = append(d.Linked, linkView{Collection: coll.Name, Refs: refs})
			}
		}
	}
	flash := ""
	if f := r.URL.Query().Get("resolved"); f != "" {
		flash = "Conflict on " + f + " resolved. Devices receive the resolution on their next sync."
	}
	c.render(w, r, http.StatusOK, "record", page{Title: d.Label, Viewer: v, Team: ref.Team, Flash: flash, Data: d})
}

type changeRow struct {
	Ref                          api.RecordRef
	Author, Role, Device, Reason string
	DeviceTime, Received         time.Time
}

type changesData struct {
	Rows               []changeRow
	Next               template.URL // the next page's address
	Collection, Author string
	Since              string
	Collections        []string
	Workers            []identity.User
}

// changes lists who changed what and when, paged by cursor.
func (c *Console) changes(w http.ResponseWriter, r *http.Request, v *viewer) {
	ctx, team, q := r.Context(), r.PathValue("team"), r.URL.Query()
	f := review.ChangedFilter{Cursor: q.Get("cursor"), Collection: q.Get("collection"), Author: q.Get("author"), Limit: 50}
	d := changesData{Collection: f.Collection, Author: f.Author, Since: q.Get("since")}
	if d.Since != "" {
		t, err := time.Parse(time.DateOnly, d.Since)
		if err != nil {
			c.fail(w, r, v, http.StatusBadRequest, "The date must be written as YYYY-MM-DD.")
			return
		}
		f.Since = t
	}
	rows, next, err := c.cfg.Engine.Changes(ctx, v.caller, team, f)
	if err != nil {
		c.failErr(w, r, v, err)
		return
	}
	p := c.people(ctx, true)
	for _, e := range rows {
		d.Rows = append(d.Rows, changeRow{Ref: e.Ref, Author: p.name(e.Author), Role: p.role(e.Author), Device: p.device(e.Device), Reason: e.Reason, DeviceTime: e.DeviceTime, Received: e.Received})
	}
	for _, col := range c.sch.Collections() {
		d.Collections = append(d.Collections, col.Name)
	}
	for _, u := range p.users {
		if slices.Contains(u.Teams, team) {
			d.Workers = append(d.Workers, u)
		}
	}
	slices.SortFunc(d.Workers, func(a, b identity.User) int { return strings.Compare(a.Name, b.Name) })
	if next != "" {
		nq := url.Values{"cursor": {next}}
		if f.Collection != "" {
			nq.Set("collection", f.Collection)
		}
		if f.Author != "" {
			nq.Set("author", f.Author)
		}
		d.Next = template.URL("/console/teams/" + url.PathEscape(team) + "/changes?" + nq.Encode())
	}
	c.render(w, r, http.StatusOK, "changes", page{Title: "Changes", Viewer: v, Team: team, Data: d})
}
