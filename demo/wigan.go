package demo

import (
	"fmt"
	"time"

	"github.com/doorstep-health/doorstep/crdt"
	"github.com/doorstep-health/doorstep/schema"
)

// caseload sizes: enough people to make a real caseload view, small enough
// that the demo loads in a moment.
var wiganCaseload = map[string]int{"amara": 10, "ben": 10, "chloe": 5}

// wigan schedules the Wigan Frailty team's eight weeks: the coordinator's
// directory, referrals from the frailty MDT, home visits by two link
// workers and the health and wellbeing coach, and the seeded conflict.
func (g *gen) wigan() {
	orgIDs := []string{}
	g.at(g.start.Add(8*time.Hour), "diane", func(b *batch) {
		for _, o := range wiganOrgs {
			rec := b.create(TeamWigan, "organisations",
				kv{"name", o.name}, kv{"type", o.typ}, kv{"pathway", o.pathway},
				kv{"cost", "free"}, kv{"active", true}, kv{"min_age", 65},
				kv{"last_verified_at", date(b.g.wall.AddDate(0, -1, 0))})
			b.add(rec, "categories", anys(o.categories)...)
			b.add(rec, "areas", "WN1", "WN2", "WN3")
			orgIDs = append(orgIDs, rec.ID)
		}
	})
	used := map[string]bool{}
	first := true
	for _, worker := range []string{"amara", "ben", "chloe"} {
		for i := range wiganCaseload[worker] {
			g.wiganPerson(worker, i, used, &orgIDs, first)
			first = false
		}
	}
}

// wiganPerson schedules one person's episode. The first person of the
// first worker carries the seeded conflict.
func (g *gen) wiganPerson(worker string, i int, used map[string]bool, orgIDs *[]string, conflict bool) {
	// Referral days spread over the first five weeks; the conflict case
	// starts early so it has a full history.
	day0 := g.between(0, 34)
	if conflict {
		day0 = 1
	}
	name := olderNames[g.rnd.IntN(len(olderNames))]
	family := g.pick(familyNames)
	// Ages 65-95, skewed to 75-90.
	years := min(95, []int{65, 75, 85, 90}[g.weightedIndex([]int{2, 5, 4, 1})]+g.rnd.IntN(6))
	dob := g.now.AddDate(-years, 0, -g.rnd.IntN(360)) // aged exactly years today
	efi := g.weighted([]string{"mild", "moderate", "severe"}, []int{2, 5, 4})
	efiMilli := map[string]int{"mild": g.between(130, 240), "moderate": g.between(250, 360), "severe": g.between(370, 560)}[efi]
	cfs := g.between(4, 7)
	if conflict {
		cfs = 5
	}
	livesAlone := g.chance(0.45)
	hasCarer := g.chance(0.55)
	if conflict {
		hasCarer = true
	}
	needs := g.pickNeeds(wiganNeeds, wiganNeedWeights, g.between(2, 4))
	postcode := fmt.Sprintf("WN%d %d%c%c", g.between(1, 6), g.between(1, 9), 'A'+rune(g.rnd.IntN(26)), 'A'+rune(g.rnd.IntN(26)))
	address := fmt.Sprintf("%d %s, Wigan", g.between(1, 120), g.pick(streets))
	nhs := g.nhsNumber(used)

	var person, referral, plan *crdt.Record
	var needRecs, goalRecs, onward []*crdt.Record
	t0 := g.workTime(day0)
	g.at(t0, "diane", func(b *batch) {
		person = b.create(TeamWigan, "people",
			kv{"nhs_number", nhs}, kv{"nhs_number_verified", true},
			kv{"given_name", name.given}, kv{"family_name", family},
			kv{"date_of_birth", date(dob)}, kv{"gender", name.gender}, kv{"ethnicity", g.weighted([]string{"A", "C", "H", "M", "Z"}, []int{20, 2, 1, 1, 1})},
			kv{"address", address}, kv{"postcode", postcode},
			kv{"phone", fmt.Sprintf("01942 %06d", g.rnd.IntN(1_000_000))},
			kv{"lives_alone", livesAlone}, kv{"has_carer", hasCarer},
			kv{"efi_category", efi}, kv{"efi_score_milli", efiMilli}, kv{"efi_date", date(t0.AddDate(0, -2, 0))},
			kv{"cfs", cfs}, kv{"cfs_version", "v2.0"}, kv{"cfs_source", "frailty_mdt"}, kv{"cfs_date", date(t0.AddDate(0, 0, -3))},
		)
		referral = b.create(TeamWigan, "referrals",
			kv{"person_id", person.ID}, kv{"service", "frailty_ageing_well"}, kv{"received_date", date(t0)},
			kv{"source", g.weighted([]string{"frailty_mdt", "gp", "hospital_discharge", "community_health", "adult_social_care", "family_carer"}, []int{8, 5, 3, 2, 1, 1})},
			kv{"referrer_name", "Frailty MDT"}, kv{"urgency", g.weighted([]string{"routine", "soon", "urgent"}, []int{6, 3, 1})},
			kv{"reason_text", needWords[needs[0]]}, kv{"status", "received"}, kv{"assigned_worker", worker},
		)
		b.add(referral, "reasons", anys(needs)...)
		b.append(referral, "status_events", map[string]any{"status": "received", "at": datetime(t0)})
		cfsRec := b.create(TeamWigan, "assessments",
			kv{"person_id", person.ID}, kv{"referral_id", referral.ID}, kv{"instrument", schema.InstrumentCFS},
			kv{"instrument_version", "CFS 2.0"}, kv{"timepoint", "baseline"}, kv{"source", "imported_mdt"},
			kv{"assessed_at", datetime(t0.AddDate(0, 0, -3))}, kv{"snomed_observable", "763264000"})
		b.append(cfsRec, "responses", map[string]any{"instrument": schema.InstrumentCFS, "answers": map[string]int{"cfs": cfs}})
		efiRec := b.create(TeamWigan, "assessments",
			kv{"person_id", person.ID}, kv{"referral_id", referral.ID}, kv{"instrument", schema.InstrumentEFI},
			kv{"timepoint", "baseline"}, kv{"source", "imported_gp"}, kv{"assessed_at", datetime(t0.AddDate(0, -2, 0))})
		efiCode := map[string]int{"fit": 1, "mild": 2, "moderate": 3, "severe": 4}[efi]
		b.append(efiRec, "responses", map[string]any{"instrument": schema.InstrumentEFI, "answers": map[string]int{"efi_category": efiCode, "efi_score_milli": efiMilli}})
	})

	// Baseline ONS4: lower than national means (a demo assumption).
	base := map[string]int{
		"ons4_life_satisfaction": g.between(3, 6), "ons4_worthwhile": g.between(3, 6),
		"ons4_happy": g.between(3, 6), "ons4_anxious": g.between(4, 8),
	}
	proxy := !conflict && g.chance(0.1)

	// Initial "what matters" home visit, sometimes after a no-access attempt.
	t := g.after(t0, g.between(2, 6))
	if g.chance(0.15) {
		tNoAccess := t
		g.at(tNoAccess, worker, func(b *batch) {
			c := b.create(TeamWigan, "contacts",
				kv{"person_id", person.ID}, kv{"referral_id", referral.ID}, kv{"contact_type", "home_visit"},
				kv{"purpose", "initial_what_matters"}, kv{"scheduled_start", datetime(tNoAccess)},
				kv{"outcome", "no_access_home_visit"}, kv{"location_postcode", postcode})
			b.add(c, "staff", worker)
			b.append(c, "notes", "No answer at the door; card left. Will ring and rebook.")
			b.write(referral, "status", "contact_attempted")
			b.append(referral, "status_events", map[string]any{"status": "contact_attempted", "at": datetime(tNoAccess)})
		})
		t = g.after(t, g.between(2, 5))
	}
	tInitial := t
	g.at(tInitial, worker, func(b *batch) {
		c := g.visit(b, TeamWigan, person, referral, worker, "home_visit", "initial_what_matters", tInitial, 60, postcode)
		consent := b.create(TeamWigan, "consent_events",
			kv{"person_id", person.ID}, kv{"scope", "sp_referral"}, kv{"decision", "given"},
			kv{"given_by", "person"}, kv{"method", "verbal"}, kv{"recorded_by", worker}, kv{"recorded_at", datetime(tInitial)})
		b.write(referral, "consent_to_referral", true)
		b.write(referral, "consent_event_id", consent.ID)
		b.write(referral, "status", "active")
		b.write(referral, "first_contact_date", date(tInitial))
		b.append(referral, "status_events", map[string]any{"status": "active", "at": datetime(tInitial)})
		who := schema.AdministeredBySelf
		if proxy {
			who = schema.AdministeredByProxy
		}
		a := g.assessment(b, TeamWigan, person, referral, c, schema.InstrumentONS4, "baseline", who, tInitial, base)
		b.add(c, "assessment_ids", a.ID)
		if g.chance(0.6) {
			a := g.assessment(b, TeamWigan, person, referral, c, schema.InstrumentUCLA3, "baseline", schema.AdministeredByReadAloud, tInitial,
				map[string]int{"ucla_companionship": g.between(2, 3), "ucla_left_out": g.between(1, 3), "ucla_isolated": g.between(2, 3)})
			b.add(c, "assessment_ids", a.ID)
		}
		if g.chance(0.5) {
			a := g.assessment(b, TeamWigan, person, referral, c, schema.InstrumentONSLoneliness, "baseline", schema.AdministeredBySelf, tInitial,
				map[string]int{"ons_lonely": g.between(1, 3)})
			b.add(c, "assessment_ids", a.ID)
		}
		for j, n := range needs {
			nr := b.create(TeamWigan, "needs",
				kv{"person_id", person.ID}, kv{"referral_id", referral.ID}, kv{"category", n},
				kv{"description", needWords[n]}, kv{"identified_by", g.pick([]string{"person", "worker", "referrer"})},
				kv{"priority", []string{"high", "medium", "low", "low"}[j]}, kv{"status", "open"})
			needRecs = append(needRecs, nr)
			b.add(c, "needs_touched", nr.ID)
		}
		plan = b.create(TeamWigan, "care_plans",
			kv{"person_id", person.ID}, kv{"referral_id", referral.ID},
			kv{"what_matters_to_me", g.pick(whatMatters)}, kv{"strengths_and_assets", "Knows the neighbours; sharp sense of humour."},
			kv{"agreed_with_person_at", datetime(tInitial)}, kv{"next_review_date", date(tInitial.AddDate(0, 0, 28))},
			kv{"plan_version", 1})
		b.add(plan, "shared_with", "person", "gp")
		for j, n := range needs[:min(len(needs), 2)] {
			gr := b.create(TeamWigan, "goals",
				kv{"person_id", person.ID}, kv{"care_plan_id", plan.ID}, kv{"statement", goalWords[n]},
				kv{"target_date", date(tInitial.AddDate(0, 0, 42))}, kv{"person_importance", g.between(7, 10)},
				kv{"person_confidence", g.between(3, 7)}, kv{"status", "not_started"})
			b.add(gr, "need_ids", needRecs[j].ID)
			b.append(gr, "actions", map[string]any{"text": "Link worker to make referral", "owner": "worker", "due": date(tInitial.AddDate(0, 0, 7))})
			goalRecs = append(goalRecs, gr)
		}
		if g.chance(0.5) {
			b.add(person, "risk_flags", g.pick([]string{"dog", "access_code", "lone_worker_risk"}))
			b.write(person, "risk_notes", "Key safe by the back door; code held by the coordinator.")
		}
		b.add(person, "contact_preferences", "phone")
		if hasCarer {
			b.add(person, "contact_preferences", "via_carer")
			carer := b.create(TeamWigan, "carers",
				kv{"cared_for_person_id", person.ID}, kv{"carer_name", fmt.Sprintf("%s %s", g.pick([]string{"Susan", "David", "Karen", "Mark", "Julie"}), family)},
				kv{"relationship", g.weighted([]string{"daughter", "son", "spouse_partner", "friend_neighbour"}, []int{4, 3, 3, 1})},
				kv{"is_main_carer", true}, kv{"lives_with", !livesAlone}, kv{"carer_identified_date", date(tInitial)},
				kv{"consent_to_contact_carer", true})
			if g.chance(0.6) {
				b.write(carer, "carer_assessment_offered_date", date(tInitial))
			}
		}
		b.append(person, "case_notes", "Initial what-matters conversation at home. "+needWords[needs[0]])
	})

	// Onward referrals a few days later.
	t = g.after(tInitial, g.between(2, 5))
	tOnward := t
	g.at(tOnward, worker, func(b *batch) {
		for j, n := range needs[:min(len(needs), g.between(1, 3))] {
			orgID := g.orgFor(n, wiganOrgs, *orgIDs)
			kind := g.weighted([]string{"referral", "signpost", "supported_introduction"}, []int{6, 3, 1})
			o := b.create(TeamWigan, "onward_referrals",
				kv{"person_id", person.ID}, kv{"referral_id", referral.ID}, kv{"organisation_id", orgID},
				kv{"kind", kind}, kv{"status", "sent"}, kv{"sent_at", datetime(tOnward)})
			if j < len(goalRecs) {
				b.write(o, "goal_id", goalRecs[j].ID)
			}
			if kind != "signpost" {
				consent := b.create(TeamWigan, "consent_events",
					kv{"person_id", person.ID}, kv{"scope", "share_with_org"}, kv{"organisation_id", orgID},
					kv{"decision", "given"}, kv{"given_by", "person"}, kv{"method", "verbal"},
					kv{"recorded_by", worker}, kv{"recorded_at", datetime(tOnward)})
				b.write(o, "consent_to_share", true)
				b.write(o, "consent_event_id", consent.ID)
				b.add(o, "data_shared", "name", "phone", "address", "needs_summary")
			}
			b.append(o, "status_events", map[string]any{"status": "sent", "at": datetime(tOnward)})
			onward = append(onward, o)
		}
		for _, gr := range goalRecs {
			b.write(gr, "status", "in_progress")
		}
	})

	// Follow-ups, then a final review if the episode has run its course.
	followUps := g.between(2, 4)
	if conflict {
		followUps = 2 // keep the conflict well inside the eight weeks
	}
	for k := range followUps {
		t = g.after(t, g.between(6, 12))
		if t.After(g.now.Add(-24 * time.Hour)) {
			return
		}
		tf, k := t, k
		joint := worker != "chloe" && k == 0 && g.chance(0.4)
		g.at(tf, worker, func(b *batch) {
			typ := g.weighted([]string{"home_visit", "telephone"}, []int{6, 4})
			outcome := g.weighted([]string{"completed", "did_not_attend", "no_access_home_visit"}, []int{17, 2, 1})
			if typ == "telephone" && outcome == "no_access_home_visit" {
				outcome = "did_not_attend"
			}
			dur := g.between(30, 60)
			if typ == "telephone" {
				dur = g.between(10, 25)
			}
			c := g.visit(b, TeamWigan, person, referral, worker, typ, "follow_up", tf, dur, postcode, outcome)
			if outcome != "completed" {
				return
			}
			if joint {
				b.add(c, "staff", "chloe")
			}
			if k < len(onward) {
				o := onward[k]
				b.write(o, "responded_at", datetime(tf.Add(-24*time.Hour)))
				for _, next := range []string{"accepted", "attended_first", "ongoing"}[:g.between(1, 3)] {
					b.write(o, "status", next)
					b.append(o, "status_events", map[string]any{"status": next, "at": datetime(tf)})
				}
			}
			if k < len(needRecs) {
				b.write(needRecs[k], "status", "being_addressed")
			}
		})
	}

	// The seeded conflict: the link worker and the coach both saw CFS 5;
	// the worker records 6 from an MDT letter, the coach, working offline
	// from the same synced record, records 4 from a GP summary.
	if conflict {
		var view *crdt.Record
		tw := g.after(t, 2)
		g.at(tw, worker, func(b *batch) {
			view = person.Clone()
			b.write(person, "cfs", 6)
			b.append(person, "case_notes", "MDT letter today: CFS now 6 after the fall; updated.")
		})
		tc := tw.Add(3 * time.Hour)
		g.at(tc, "chloe", func(b *batch) {
			b.writeFrom(view, person, "cfs", 4)
			b.append(person, "case_notes", "Coaching visit (offline). GP summary says CFS 4; recorded.")
		})
		g.finish = append(g.finish, func() {
			g.ds.Conflicts = append(g.ds.Conflicts, Conflict{
				Team: TeamWigan, Collection: "people", Record: person.ID, Field: "cfs",
				Note: fmt.Sprintf("%s %s: amara recorded CFS 6 and chloe, offline from the same synced record, CFS 4; both values stand until a coordinator settles it", name.given, family),
			})
		})
		return // the conflict case stays open for the coordinator
	}

	t = g.after(t, g.between(7, 14))
	if t.After(g.now.Add(-24 * time.Hour)) {
		return
	}
	tFinal := t
	final := map[string]int{}
	for _, k := range ons4Items {
		v := base[k]
		if k == "ons4_anxious" {
			final[k] = max(0, v-g.between(1, 3))
		} else {
			final[k] = min(10, v+g.between(0, 2))
		}
	}
	g.at(tFinal, worker, func(b *batch) {
		c := g.visit(b, TeamWigan, person, referral, worker, "home_visit", "final_review_exit", tFinal, 45, postcode)
		who := schema.AdministeredBySelf
		if proxy {
			who = schema.AdministeredByProxy
		}
		a := g.assessment(b, TeamWigan, person, referral, c, schema.InstrumentONS4, "final", who, tFinal, final)
		b.add(c, "assessment_ids", a.ID)
		for _, gr := range goalRecs {
			b.write(gr, "status", g.weighted([]string{"achieved", "partly_achieved", "not_achieved"}, []int{6, 3, 1}))
		}
		for _, nr := range needRecs {
			b.write(nr, "status", g.weighted([]string{"resolved", "being_addressed", "not_pursued"}, []int{6, 2, 1}))
		}
		reason := g.weighted([]string{"goals_met", "plan_completed", "unable_to_contact", "long_term_admission_hospital_or_care_home"}, []int{6, 4, 1, 1})
		b.write(referral, "status", "closed")
		b.write(referral, "closed_date", date(tFinal))
		b.write(referral, "closure_reason", reason)
		b.write(referral, "message_back_sent_at", datetime(tFinal.Add(2*time.Hour)))
		b.append(referral, "status_events", map[string]any{"status": "closed", "at": datetime(tFinal), "note": "Exit plan agreed."})
		b.append(person, "case_notes", "Final review. Plan completed; person knows how to re-refer.")
	})
}

// visit creates a contact record; outcome is "completed" unless given.
func (g *gen) visit(b *batch, team string, person, referral *crdt.Record, worker, typ, purpose string, at time.Time, minutes int, postcode string, outcome ...string) *crdt.Record {
	out := "completed"
	if len(outcome) > 0 {
		out = outcome[0]
	}
	if out != "completed" {
		c := b.create(team, "contacts",
			kv{"person_id", person.ID}, kv{"referral_id", referral.ID}, kv{"contact_type", typ}, kv{"purpose", purpose},
			kv{"scheduled_start", datetime(at)}, kv{"outcome", out})
		b.add(c, "staff", worker)
		b.append(c, "notes", "Did not attend / no answer; will rebook.")
		return c
	}
	c := b.create(team, "contacts",
		kv{"person_id", person.ID}, kv{"contact_type", typ}, kv{"purpose", purpose},
		kv{"scheduled_start", datetime(at)}, kv{"actual_start", datetime(at.Add(time.Duration(g.rnd.IntN(10)) * time.Minute))},
		kv{"duration_min", minutes}, kv{"outcome", out})
	if referral != nil {
		b.write(c, "referral_id", referral.ID)
	}
	b.add(c, "staff", worker)
	if typ == "home_visit" {
		b.write(c, "location_postcode", postcode)
		b.write(c, "lone_worker_check_in", datetime(at))
		b.write(c, "lone_worker_check_out", datetime(at.Add(time.Duration(minutes+5)*time.Minute)))
	}
	b.append(c, "notes", g.pick(visitNotes))
	return c
}

// assessment records one instrument response as an assessments record.
func (g *gen) assessment(b *batch, team string, person, referral, contact *crdt.Record, instrument, timepoint, who string, at time.Time, answers map[string]int) *crdt.Record {
	a := b.create(team, "assessments",
		kv{"person_id", person.ID}, kv{"instrument", instrument}, kv{"timepoint", timepoint},
		kv{"administered_by", who}, kv{"source", "recorded_here"}, kv{"assessed_at", datetime(at)})
	if referral != nil {
		b.write(a, "referral_id", referral.ID)
	}
	if contact != nil {
		b.write(a, "contact_id", contact.ID)
	}
	if instrument == schema.InstrumentONS4 {
		b.write(a, "instrument_version", "ONS APS 2019")
	}
	b.append(a, "responses", map[string]any{"instrument": instrument, "answers": answers, "administered_by": who, "recorded_at": datetime(at)})
	return a
}

// pickNeeds picks n distinct need categories by weight.
func (g *gen) pickNeeds(cats []string, weights []int, n int) []string {
	var out []string
	for len(out) < n {
		c := g.weighted(cats, weights)
		dup := false
		for _, x := range out {
			dup = dup || x == c
		}
		if !dup {
			out = append(out, c)
		}
	}
	return out
}

// orgFor picks an organisation from a team's directory, preferring one
// listed for the need; ids holds the record IDs of list's entries.
func (g *gen) orgFor(need string, list []org, ids []string) string {
	var matches []string
	for i, o := range list {
		for _, c := range o.categories {
			if c == need && i < len(ids) {
				matches = append(matches, ids[i])
			}
		}
	}
	if len(matches) == 0 {
		return ids[g.rnd.IntN(len(ids))]
	}
	return g.pick(matches)
}

// after returns a working time d days after prev, and at least an hour
// after it.
func (g *gen) after(prev time.Time, d int) time.Time {
	day := int(prev.Sub(g.start).Hours()/24) + d
	t := g.workTime(day)
	if !t.After(prev.Add(time.Hour)) {
		t = prev.Add(time.Hour)
	}
	return t
}

func anys(xs []string) []any {
	out := make([]any, len(xs))
	for i, x := range xs {
		out[i] = x
	}
	return out
}
