package web

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"html"
	"html/template"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/auth/identity"
	"github.com/doorstep-health/doorstep/crdt"
	"github.com/doorstep-health/doorstep/schema"
	"github.com/doorstep-health/doorstep/sync/review"
)

type searchRow struct {
	Ref                        api.RecordRef
	Name, NHS, Postcode, Birth string
}

// search finds people by name, NHS number or postcode through the
// engine's index.
func (c *Console) search(w http.ResponseWriter, r *http.Request, v *viewer) {
	team, q := r.PathValue("team"), strings.TrimSpace(r.URL.Query().Get("q"))
	var rows []searchRow
	if q != "" {
		recs, err := c.cfg.Engine.Search(r.Context(), v.caller, team, q, 0)
		if err != nil {
			c.failErr(w, r, v, err)
			return
		}
		for _, rec := range recs {
			rows = append(rows, searchRow{
				Ref:  api.RecordRef{Team: rec.Team, Collection: rec.Collection, ID: rec.ID},
				Name: recordLabel(rec), NHS: regString(rec, "nhs_number"), Postcode: regString(rec, "postcode"), Birth: regString(rec, "date_of_birth"),
			})
		}
	}
	c.render(w, r, http.StatusOK, "search", page{Title: "Find a person", Viewer: v, Team: team, Data: struct {
		Q    string
		Rows []searchRow
		Max  int
	}{q, rows, review.MaxSearchResults}})
}

// teamOutcomes reads the team's assessments and computes the export.
func (c *Console) teamOutcomes(r *http.Request, v *viewer) (schema.Outcomes, error) {
	return c.Outcomes(r.Context(), v.caller, r.PathValue("team"))
}

// Outcomes returns a team's outcome export for the JSON route and the
// outcomes page. It is cached per team: served as is while the team's log
// has not moved, brought up to date from the assessments the log entries
// since touched or erased when it has, and rebuilt from every assessment
// only when too much has changed.
func (c *Console) Outcomes(ctx context.Context, caller review.Caller, team string) (schema.Outcomes, error) {
	ver, err := c.cfg.Engine.TeamVersion(ctx, caller, team)
	if err != nil {
		return schema.Outcomes{}, err
	}
	c.outMu.Lock()
	defer c.outMu.Unlock() // one computation at a time; others wait for it
	e, ok := c.outCache[team]
	if ok && e.version == ver {
		return e.o, nil
	}
	if ok && e.version < ver {
		refs, rebuild, err := c.cfg.Engine.TouchedSince(ctx, caller, team, e.version, "assessments", 0)
		if err != nil {
			return schema.Outcomes{}, err
		}
		if !rebuild {
			if err := c.catchUp(ctx, caller, e.book, refs); err != nil {
				return schema.Outcomes{}, err
			}
			e.version, e.o = ver, e.book.Outcomes()
			c.outCache[team] = e
			return e.o, nil
		}
	}
	recs, err := c.cfg.Engine.CollectionRecords(ctx, caller, team, "assessments", 0)
	if err != nil {
		return schema.Outcomes{}, err
	}
	book := schema.NewOutcomeBook()
	book.Put(recs)
	if len(c.outCache) >= maxCachedTeams {
		clear(c.outCache)
	}
	e = cachedOutcomes{version: ver, book: book, o: book.Outcomes()}
	c.outCache[team] = e
	return e.o, nil
}

// catchUp puts the current state of the given assessments records into
// the book (records gone since are dropped).
func (c *Console) catchUp(ctx context.Context, caller review.Caller, book *schema.OutcomeBook, refs []api.RecordRef) error {
	var recs []*crdt.Record
	for _, ref := range refs {
		rec, err := c.cfg.Engine.Record(ctx, caller, ref)
		if errors.Is(err, review.ErrNotFound) {
			book.Drop(ref.ID)
			continue
		} else if err != nil {
			return err
		}
		recs = append(recs, rec)
	}
	book.Put(recs)
	return nil
}

// maxCachedTeams bounds the outcomes cache.
const maxCachedTeams = 256

// cachedOutcomes is a team's outcome export at a team version, with the
// book it was computed from.
type cachedOutcomes struct {
	version uint64
	book    *schema.OutcomeBook
	o       schema.Outcomes
}

// ons4Labels name the ONS4 items on charts.
var ons4Labels = map[string]string{
	"ons4_life_satisfaction": "Life satisfaction", "ons4_worthwhile": "Things done are worthwhile",
	"ons4_happy": "Happiness yesterday", "ons4_anxious": "Anxiety yesterday",
}

// outcomesPage is how many people the outcomes page lists at a time.
const outcomesPage = 50

type itemChart struct {
	Item, Label string
	Summary     schema.ONS4ItemSummary
	LowerBetter bool
	SVG         template.HTML
}

func (c *Console) outcomes(w http.ResponseWriter, r *http.Request, v *viewer) {
	o, err := c.teamOutcomes(r, v)
	if err != nil {
		c.failErr(w, r, v, err)
		return
	}
	in, _ := schema.InstrumentByCode(schema.InstrumentONS4)
	var charts []itemChart
	for i, s := range o.ONS4Summary {
		it := in.Items[i]
		label := ons4Labels[it.ID]
		if label == "" {
			label = it.ID
		}
		charts = append(charts, itemChart{Item: it.ID, Label: label, Summary: s, LowerBetter: it.LowerIsBetter,
			SVG: chartSVG(label, 0, 10, s.MeanFirst, s.MeanLast, s.People, s.Improved, s.Same, s.Worse, it.LowerIsBetter)})
	}
	u := o.UCLA3Total
	ucla := chartSVG("UCLA-3 loneliness total", 3, 9, u.MeanFirst, u.MeanLast, u.People, u.Improved, u.Same, u.Worse, true)
	// The per-person table is paged (the CSV has everyone).
	pg, _ := strconv.Atoi(r.URL.Query().Get("page"))
	pg = max(pg, 1)
	people := max(len(o.ONS4), len(o.UCLA3))
	pages := max((people+outcomesPage-1)/outcomesPage, 1)
	pg = min(pg, pages)
	lo, hi := (pg-1)*outcomesPage, pg*outcomesPage
	o.ONS4 = o.ONS4[min(lo, len(o.ONS4)):min(hi, len(o.ONS4))]
	o.UCLA3 = o.UCLA3[min(lo, len(o.UCLA3)):min(hi, len(o.UCLA3))]
	// Names of the people on this page (one record read each).
	names := map[string]string{}
	for _, id := range append(personIDs(o.ONS4), uclaIDs(o.UCLA3)...) {
		if _, ok := names[id]; ok {
			continue
		}
		names[id] = shortID(id)
		if rec, err := c.cfg.Engine.Record(r.Context(), v.caller, api.RecordRef{Team: r.PathValue("team"), Collection: "people", ID: id}); err == nil {
			names[id] = recordLabel(rec)
		}
	}
	c.render(w, r, http.StatusOK, "outcomes", page{Title: "Outcomes", Viewer: v, Team: r.PathValue("team"), Data: struct {
		O                 schema.Outcomes
		Charts            []itemChart
		UCLA              template.HTML
		Page, Pages, Prev int
		Next              int
		Names             map[string]string
	}{o, charts, ucla, pg, pages, pg - 1, pg + 1, names}})
}

func personIDs(os []schema.PersonOutcome) []string {
	out := make([]string, len(os))
	for i, o := range os {
		out[i] = o.PersonID
	}
	return out
}

func uclaIDs(us []schema.UCLA3Outcome) []string {
	out := make([]string, len(us))
	for i, u := range us {
		out[i] = u.PersonID
	}
	return out
}

func (c *Console) outcomesCSV(w http.ResponseWriter, r *http.Request, v *viewer) {
	o, err := c.teamOutcomes(r, v)
	if err != nil {
		c.failErr(w, r, v, err)
		return
	}
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="outcomes-`+url.PathEscape(r.PathValue("team"))+`.csv"`)
	if err := WriteOutcomesCSV(w, o); err != nil {
		c.log.Warn("outcomes csv", "err", err)
	}
}

// WriteOutcomesCSV writes the outcome export as CSV: one row per person
// and measure (each ONS4 item separately, never summed; the UCLA-3 total),
// first and latest score with their dates, the change, and whether it
// moved the good way (down for anxiety and loneliness). Proxy answers are
// excluded.
func WriteOutcomesCSV(w io.Writer, o schema.Outcomes) error {
	cw := csv.NewWriter(w)
	_ = cw.Write([]string{"person_id", "measure", "first", "first_at", "latest", "latest_at", "change", "improved", "lower_is_better"})
	in, _ := schema.InstrumentByCode(schema.InstrumentONS4)
	lower := map[string]bool{}
	for _, it := range in.Items {
		lower[it.ID] = it.LowerIsBetter
	}
	day := func(t time.Time) string { return t.UTC().Format(time.DateOnly) }
	for _, p := range o.ONS4 {
		for _, x := range p.Pairs {
			_ = cw.Write([]string{p.PersonID, x.Item, strconv.Itoa(x.First), day(x.FirstAt), strconv.Itoa(x.Last), day(x.LastAt), strconv.Itoa(x.Change), strconv.FormatBool(x.Improved), strconv.FormatBool(lower[x.Item])})
		}
	}
	for _, u := range o.UCLA3 {
		_ = cw.Write([]string{u.PersonID, "ucla3_total", strconv.Itoa(u.First), day(u.FirstAt), strconv.Itoa(u.Last), day(u.LastAt), strconv.Itoa(u.Change), strconv.FormatBool(u.Improved), "true"})
	}
	cw.Flush()
	return cw.Error()
}

// chartSVG draws one measure: the team's mean first and latest score on
// the measure's scale, an arrow between them, and a bar of how many people
// improved, stayed the same or got worse. Drawn on the server; the text
// says the same as the picture.
func chartSVG(label string, lo, hi int, first, last float64, people, improved, same, worse int, lowerBetter bool) template.HTML {
	const W, x0, x1 = 560, 40, 520
	x := func(v float64) float64 { return x0 + (v-float64(lo))/float64(hi-lo)*(x1-x0) }
	var b strings.Builder
	dir := "Higher is better."
	if lowerBetter {
		dir = "Lower is better: this measure runs the other way."
	}
	title := fmt.Sprintf("%s: mean first %.1f, mean latest %.1f, %d people. %s", label, first, last, people, dir)
	fmt.Fprintf(&b, `<svg class="chart" role="img" aria-label="%s" viewBox="0 0 %d 150" width="%d" height="150" xmlns="http://www.w3.org/2000/svg">`, html.EscapeString(title), W, W)
	fmt.Fprintf(&b, `<title>%s</title>`, html.EscapeString(title))
	fmt.Fprintf(&b, `<line x1="%d" y1="50" x2="%d" y2="50" stroke="#1b1b1b" stroke-width="2"/>`, x0, x1)
	for v := lo; v <= hi; v++ {
		fmt.Fprintf(&b, `<line x1="%.1f" y1="45" x2="%.1f" y2="55" stroke="#1b1b1b"/><text x="%.1f" y="70" font-size="12" text-anchor="middle" fill="#1b1b1b">%d</text>`, x(float64(v)), x(float64(v)), x(float64(v)), v)
	}
	better := "better →"
	if lowerBetter {
		better = "← better"
	}
	fmt.Fprintf(&b, `<text x="%d" y="18" font-size="13" fill="#1b1b1b" font-weight="700">%s</text><text x="%d" y="18" font-size="13" text-anchor="end" fill="#1b1b1b">%s</text>`, x0, html.EscapeString(label), x1, better)
	if people > 0 {
		fmt.Fprintf(&b, `<line x1="%.1f" y1="38" x2="%.1f" y2="38" stroke="#1d4f91" stroke-width="3"/>`, x(first), x(last))
		fmt.Fprintf(&b, `<circle cx="%.1f" cy="38" r="6" fill="#ffffff" stroke="#1d4f91" stroke-width="3"/><text x="%.1f" y="30" font-size="12" text-anchor="middle" fill="#1b1b1b">first %.1f</text>`, x(first), x(first), first)
		fmt.Fprintf(&b, `<circle cx="%.1f" cy="38" r="6" fill="#1d4f91"/><text x="%.1f" y="30" font-size="12" text-anchor="middle" fill="#1b1b1b" dy="%d">latest %.1f</text>`, x(last), x(last), labelOffset(x(first), x(last)), last)
		total := float64(improved + same + worse)
		bx := float64(x0)
		for _, seg := range []struct {
			n     int
			fill  string
			label string
		}{{improved, "#00703c", "improved"}, {same, "#b1b4b6", "same"}, {worse, "#a4000f", "worse"}} {
			wd := float64(seg.n) / total * (x1 - x0)
			if wd > 0 {
				fmt.Fprintf(&b, `<rect x="%.1f" y="90" width="%.1f" height="22" fill="%s"/>`, bx, wd, seg.fill)
			}
			bx += wd
		}
		fmt.Fprintf(&b, `<text x="%d" y="132" font-size="12" fill="#1b1b1b">%d improved · %d the same · %d worse</text>`, x0, improved, same, worse)
	} else {
		fmt.Fprintf(&b, `<text x="%d" y="105" font-size="13" fill="#1b1b1b">No one has a first and a latest score yet.</text>`, x0)
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String()) // every interpolated string above is escaped
}

// labelOffset moves the "latest" label below the line when it would
// overlap the "first" one.
func labelOffset(a, b float64) int {
	if a-b < 60 && b-a < 60 {
		return 52 // below the scale's numbers, above the bar
	}
	return 0
}

type deviceRow struct {
	identity.Device
	UserName string
}

// adminUsers lists the users who share a team with the admin: the scope
// of the admin pages.
func (c *Console) adminUsers(r *http.Request, v *viewer) ([]identity.User, error) {
	us, err := c.cfg.Auth.Users(r.Context())
	if err != nil {
		return nil, err
	}
	var out []identity.User
	for _, u := range us {
		if slices.ContainsFunc(u.Teams, func(t string) bool { return slices.Contains(v.Teams, t) }) {
			out = append(out, u)
		}
	}
	slices.SortFunc(out, func(a, b identity.User) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

func (c *Console) devices(w http.ResponseWriter, r *http.Request, v *viewer) {
	us, err := c.adminUsers(r, v)
	if err != nil {
		c.failErr(w, r, v, err)
		return
	}
	var rows []deviceRow
	for _, u := range us {
		ds, err := c.cfg.Auth.Devices(r.Context(), u.ID)
		if err != nil {
			c.failErr(w, r, v, err)
			return
		}
		for _, d := range ds {
			rows = append(rows, deviceRow{Device: d, UserName: u.Name})
		}
	}
	slices.SortFunc(rows, func(a, b deviceRow) int { return b.LastSeen.Compare(a.LastSeen) })
	flash := ""
	if r.URL.Query().Get("revoked") != "" {
		flash = "Device revoked: it can no longer sync, and its access ends within one access-token lifetime."
	}
	c.render(w, r, http.StatusOK, "devices", page{Title: "Devices", Viewer: v, Flash: flash, Data: rows})
}

func (c *Console) revoke(w http.ResponseWriter, r *http.Request, v *viewer) {
	id, ok := replicaOf(r.PathValue("device"))
	if !ok {
		c.fail(w, r, v, http.StatusNotFound, "No such device.")
		return
	}
	d, err := c.cfg.Auth.Device(r.Context(), id)
	if err != nil {
		c.failErr(w, r, v, err)
		return
	}
	us, err := c.adminUsers(r, v)
	if err != nil {
		c.failErr(w, r, v, err)
		return
	}
	if !slices.ContainsFunc(us, func(u identity.User) bool { return u.ID == d.User }) {
		c.fail(w, r, v, http.StatusNotFound, "No such device.") // another team's: not told apart
		return
	}
	if _, err := c.cfg.Auth.RevokeDevice(r.Context(), id); err != nil {
		c.failErr(w, r, v, err)
		return
	}
	http.Redirect(w, r, "/console/admin/devices?revoked=1", http.StatusSeeOther)
}

type quarantineRow struct {
	ID                         uint64
	Ref                        api.RecordRef
	Field, Kind, Value, Author string
	Device, Code, Reason       string
	Time, Received             time.Time
	Reapplicable               bool
}

func (c *Console) quarantine(w http.ResponseWriter, r *http.Request, v *viewer) {
	qs, err := c.cfg.Engine.TeamQuarantine(r.Context(), v.Teams, 0)
	if err != nil {
		c.failErr(w, r, v, err)
		return
	}
	p := c.people(r.Context(), true)
	var rows []quarantineRow
	for _, q := range qs {
		rows = append(rows, quarantineRow{
			ID: q.ID, Ref: api.RecordRef{Team: q.Op.Team, Collection: q.Op.Collection, ID: q.Op.Record},
			Field: q.Op.Field, Kind: q.Op.Kind.String(), Value: show(q.Op.Value), Author: p.name(q.Author), Device: p.device(q.Replica),
			Code: string(q.Code), Reason: q.Reason, Time: q.Op.ID.Time.Time(), Received: q.Received, Reapplicable: q.Reapplicable,
		})
	}
	flash := ""
	switch r.URL.Query().Get("done") {
	case "reapplied":
		flash = "The op now passes and has been merged."
	case "dismissed":
		flash = "The op was dismissed: it is removed from the quarantine and will never be merged."
	}
	c.render(w, r, http.StatusOK, "quarantine", page{Title: "Quarantine", Viewer: v, Flash: flash, Data: rows})
}

// quarantineEntry returns a quarantine entry of one of the admin's teams;
// another team's answers as an unknown one does.
func (c *Console) quarantineEntry(w http.ResponseWriter, r *http.Request, v *viewer) (review.QuarantinedOp, bool) {
	id, err := strconv.ParseUint(r.PathValue("qid"), 10, 64)
	if err == nil {
		q, err := c.cfg.Engine.QuarantinedByID(r.Context(), id)
		if err == nil && slices.Contains(v.Teams, q.Op.Team) {
			return q, true
		}
		if err != nil && !errors.Is(err, review.ErrNotFound) {
			c.failErr(w, r, v, err)
			return review.QuarantinedOp{}, false
		}
	}
	c.fail(w, r, v, http.StatusNotFound, "No such quarantine entry in your teams.")
	return review.QuarantinedOp{}, false
}

func (c *Console) reapply(w http.ResponseWriter, r *http.Request, v *viewer) {
	q, ok := c.quarantineEntry(w, r, v)
	if !ok {
		return
	}
	err := c.cfg.Engine.Reapply(r.Context(), q.ID)
	ae := api.AuditEntry{Action: "quarantine.reapply", Team: q.Op.Team, TargetKind: "quarantine", TargetID: strconv.FormatUint(q.ID, 10),
		Detail: map[string]string{"via": "console", "outcome": "merged", "op": opHex(q.Op.ID)}}
	if err != nil {
		ae.Detail["outcome"] = "still_refused"
	}
	_ = c.audit(r, ae)
	if err != nil {
		c.failErr(w, r, v, err)
		return
	}
	http.Redirect(w, r, "/console/admin/quarantine?done=reapplied", http.StatusSeeOther)
}

// dismiss removes a quarantine entry for good (the admin decided the op
// is not wanted), recorded in the audit trail.
func (c *Console) dismiss(w http.ResponseWriter, r *http.Request, v *viewer) {
	q, ok := c.quarantineEntry(w, r, v)
	if !ok {
		return
	}
	if _, err := c.cfg.Engine.Dismiss(r.Context(), q.ID); err != nil {
		c.failErr(w, r, v, err)
		return
	}
	_ = c.audit(r, api.AuditEntry{Action: "quarantine.dismiss", Team: q.Op.Team, TargetKind: "quarantine", TargetID: strconv.FormatUint(q.ID, 10),
		Detail: map[string]string{"via": "console", "op": opHex(q.Op.ID), "code": string(q.Code), "record": q.Op.Collection + "/" + q.Op.Record}})
	http.Redirect(w, r, "/console/admin/quarantine?done=dismissed", http.StatusSeeOther)
}

func (c *Console) users(w http.ResponseWriter, r *http.Request, v *viewer) {
	us, err := c.adminUsers(r, v)
	if err != nil {
		c.failErr(w, r, v, err)
		return
	}
	names := c.teamNames(r.Context())
	type teamRow struct {
		ID, Name string
		Members  int
	}
	var teams []teamRow
	for _, t := range v.Teams {
		n := 0
		for _, u := range us {
			if slices.Contains(u.Teams, t) {
				n++
			}
		}
		teams = append(teams, teamRow{t, names[t], n})
	}
	c.render(w, r, http.StatusOK, "users", page{Title: "Users and teams", Viewer: v, Data: struct {
		Users []identity.User
		Teams any
	}{us, teams}})
}

// PersonMatch is the JSON form of a person found by a search.
func PersonMatch(rec *crdt.Record) api.PersonMatch {
	return api.PersonMatch{
		Team: rec.Team, Collection: rec.Collection, ID: rec.ID, Name: recordLabel(rec),
		NHSNumber: regString(rec, "nhs_number"), DateOfBirth: regString(rec, "date_of_birth"), Postcode: regString(rec, "postcode"),
	}
}

// OutcomesJSON is the JSON form of a team's outcome export.
func OutcomesJSON(team string, o schema.Outcomes) api.OutcomesReply {
	in, _ := schema.InstrumentByCode(schema.InstrumentONS4)
	lower := map[string]bool{}
	for _, it := range in.Items {
		lower[it.ID] = it.LowerIsBetter
	}
	out := api.OutcomesReply{Team: team, People: []api.PersonOutcomes{}, Skipped: o.Skipped}
	byPerson := map[string]int{}
	add := func(person string, p api.OutcomePair) {
		i, ok := byPerson[person]
		if !ok {
			i = len(out.People)
			byPerson[person] = i
			out.People = append(out.People, api.PersonOutcomes{PersonID: person})
		}
		out.People[i].Pairs = append(out.People[i].Pairs, p)
	}
	for _, po := range o.ONS4 {
		for _, x := range po.Pairs {
			add(po.PersonID, api.OutcomePair{Measure: x.Item, First: x.First, FirstAt: x.FirstAt.UTC(), Latest: x.Last, LatestAt: x.LastAt.UTC(), Change: x.Change, Improved: x.Improved, LowerIsBetter: lower[x.Item]})
		}
	}
	for _, u := range o.UCLA3 {
		add(u.PersonID, api.OutcomePair{Measure: "ucla3_total", First: u.First, FirstAt: u.FirstAt.UTC(), Latest: u.Last, LatestAt: u.LastAt.UTC(), Change: u.Change, Improved: u.Improved, LowerIsBetter: true})
	}
	slices.SortFunc(out.People, func(a, b api.PersonOutcomes) int { return strings.Compare(a.PersonID, b.PersonID) })
	for _, s := range o.ONS4Summary {
		out.Summary = append(out.Summary, api.MeasureSummary{Measure: s.Item, People: s.People, MeanFirst: s.MeanFirst, MeanLatest: s.MeanLast, Improved: s.Improved, Same: s.Same, Worse: s.Worse, LowerIsBetter: lower[s.Item]})
	}
	u := o.UCLA3Total
	out.Summary = append(out.Summary, api.MeasureSummary{Measure: "ucla3_total", People: u.People, MeanFirst: u.MeanFirst, MeanLatest: u.MeanLast, Improved: u.Improved, Same: u.Same, Worse: u.Worse, LowerIsBetter: true})
	return out
}

// StartWarm computes every team's outcome export in the background, so
// that the first outcomes view after the server starts is served from the
// cache. Close stops it; it is started at most once.
func (c *Console) StartWarm() {
	c.warmOnce.Do(func() {
		ctx, cancel := context.WithCancel(context.Background())
		c.warmStop, c.warmDone = cancel, make(chan struct{})
		go func() {
			defer close(c.warmDone)
			c.warm(ctx)
		}()
	})
}

// Close stops the background warm-up, if any, and waits for it.
func (c *Console) Close() {
	c.warmOnce.Do(func() {}) // a later StartWarm starts nothing
	if c.warmStop != nil {
		c.warmStop()
		<-c.warmDone
	}
}

func (c *Console) warm(ctx context.Context) {
	teams, err := c.cfg.Auth.Teams(ctx)
	if err != nil {
		c.log.Debug("console warm-up: teams", "err", err)
		return
	}
	start := time.Now()
	for _, t := range teams {
		if ctx.Err() != nil {
			return
		}
		if _, err := c.Outcomes(ctx, review.Caller{Teams: []string{t.ID}}, t.ID); err != nil {
			c.log.Debug("console warm-up: outcomes", "team", t.ID, "err", err)
			return // the engine is closing, or broken: the pages will say so
		}
	}
	c.log.Info("console outcomes cache warmed", "teams", len(teams), "took", time.Since(start).Round(time.Millisecond))
}
