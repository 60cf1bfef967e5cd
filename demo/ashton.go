package demo

import (
	"fmt"
	"time"

	"github.com/doorstep-health/doorstep/crdt"
	"github.com/doorstep-health/doorstep/schema"
)

// ashton schedules Ashton PCN's eight weeks: the coordinator's community
// directory, fortnightly drop-ins at nine GP practices run by two link
// workers (many attendances anonymous or signpost-only), and short social
// prescribing episodes for the people a drop-in refers.
func (g *gen) ashton() {
	orgIDs := make([]string, 0, len(ashtonOrgs))
	// The directory goes in as a few changes, as a coordinator would type it.
	for chunk := 0; chunk < len(ashtonOrgs); chunk += 10 {
		lo, hi := chunk, min(chunk+10, len(ashtonOrgs))
		g.at(g.start.Add(7*time.Hour+time.Duration(chunk)*time.Minute), "helen", func(b *batch) {
			for _, o := range ashtonOrgs[lo:hi] {
				rec := b.create(TeamAshton, "organisations",
					kv{"name", o.name}, kv{"type", o.typ}, kv{"pathway", o.pathway},
					kv{"cost", g.weighted([]string{"free", "low_cost"}, []int{5, 1})}, kv{"active", true},
					kv{"min_age", 18}, kv{"referral_method", g.pick([]string{"email", "phone", "form"})},
					kv{"last_verified_at", date(b.g.wall.AddDate(0, -g.between(0, 5), 0))})
				b.add(rec, "categories", anys(o.categories)...)
				b.add(rec, "areas", "OL6", "OL7")
				if len(orgIDs) == 0 {
					b.write(rec, "schedule", "Tuesdays 10:00-12:00")
				}
				if o.pathway != "signpost_only" {
					b.write(rec, "dsa_in_place", true)
				}
				orgIDs = append(orgIDs, rec.ID)
			}
		})
	}
	g.directoryConflict(&orgIDs)
	used := map[string]bool{}
	workers := []string{"farah", "gareth"}
	for p, practice := range ashtonPractices {
		for k := 0; k < 4; k++ {
			day := p%5 + 14*k + 1
			if day > 54 {
				continue
			}
			worker := workers[(p+k)%2]
			start := g.start.AddDate(0, 0, day)
			switch start.Weekday() {
			case time.Saturday:
				start = start.AddDate(0, 0, 2)
			case time.Sunday:
				start = start.AddDate(0, 0, 1)
			}
			start = start.Add(time.Duration(9+g.rnd.IntN(5)) * time.Hour)
			g.dropin(worker, practice, start, &orgIDs, used)
		}
	}
}

// dropin schedules one drop-in session and its attendances.
func (g *gen) dropin(worker, practice string, start time.Time, orgIDs *[]string, used map[string]bool) {
	var session *crdt.Record
	g.at(start, worker, func(b *batch) {
		session = b.create(TeamAshton, "dropin_sessions",
			kv{"venue", "gp_practice"}, kv{"location_name", practice},
			kv{"start", datetime(start)}, kv{"end", datetime(start.Add(3 * time.Hour))})
		b.add(session, "staff", worker)
		for _, id := range g.pickN(*orgIDs, g.between(0, 2)) {
			b.add(session, "partner_org_ids", id)
		}
	})
	n := g.between(2, 6)
	for i := range n {
		arrival := start.Add(time.Duration(10+i*25+g.rnd.IntN(15)) * time.Minute)
		g.at(arrival, worker, func(b *batch) {
			needs := g.pickNeeds(ashtonNeeds, ashtonNeedWeights, g.between(1, 2))
			outcome := g.weighted([]string{"information_only", "signposted", "referral_opened", "booked_follow_up"}, []int{30, 45, 15, 10})
			att := b.create(TeamAshton, "dropin_attendances",
				kv{"session_id", session.ID}, kv{"arrival", datetime(arrival)}, kv{"outcome", outcome})
			b.add(att, "need_categories", anys(needs)...)
			switch outcome {
			case "signposted":
				for _, n := range needs {
					b.add(att, "signposted_org_ids", g.orgFor(n, ashtonOrgs, *orgIDs))
				}
			case "referral_opened":
				person, referral := g.ashtonPerson(b, worker, arrival, needs, used)
				b.write(att, "person_id", person.ID)
				b.write(att, "referral_id", referral.ID)
				g.ashtonEpisode(worker, person, referral, arrival, needs, orgIDs)
			case "booked_follow_up":
				b.write(att, "note", "Booked a longer appointment next week.")
			}
		})
	}
	g.at(start.Add(3*time.Hour), worker, func(b *batch) {
		b.write(session, "anonymous_attendees", g.between(0, 8))
		b.append(session, "notes", fmt.Sprintf("Busy session; %s in the waiting room for the first hour.", g.pick([]string{"benefits advice", "the food pantry volunteers", "the carers centre"})))
	})
}

// ashtonPerson records a person and opens an episode at a drop-in.
func (g *gen) ashtonPerson(b *batch, worker string, at time.Time, needs []string, used map[string]bool) (person, referral *crdt.Record) {
	name := adultNames[g.rnd.IntN(len(adultNames))]
	dob := at.AddDate(-g.between(19, 88), -g.rnd.IntN(12), -g.rnd.IntN(28))
	fields := []kv{
		{"given_name", name.given}, {"family_name", g.pick(familyNames)}, {"date_of_birth", date(dob)},
		{"gender", name.gender}, {"address", fmt.Sprintf("%d %s, Ashton-under-Lyne", g.between(1, 200), g.pick(streets))},
		{"postcode", fmt.Sprintf("OL%d %d%c%c", g.between(6, 7), g.between(1, 9), 'A'+rune(g.rnd.IntN(26)), 'A'+rune(g.rnd.IntN(26)))},
		{"phone", fmt.Sprintf("07700 9%05d", g.rnd.IntN(100_000))},
		{"lives_alone", g.chance(0.3)},
	}
	// Not everyone's NHS number is to hand at a drop-in.
	if g.chance(0.8) {
		fields = append(fields, kv{"nhs_number", g.nhsNumber(used)}, kv{"nhs_number_verified", false})
	}
	person = b.create(TeamAshton, "people", fields...)
	b.add(person, "contact_preferences", g.pick([]string{"phone", "sms"}))
	referral = b.create(TeamAshton, "referrals",
		kv{"person_id", person.ID}, kv{"service", "splw"}, kv{"received_date", date(at)},
		kv{"source", "drop_in"}, kv{"reason_text", needWords[needs[0]]}, kv{"urgency", "routine"},
		kv{"status", "accepted"}, kv{"assigned_worker", worker}, kv{"consent_to_referral", true})
	b.add(referral, "reasons", anys(needs)...)
	b.append(referral, "status_events", map[string]any{"status": "accepted", "at": datetime(at)})
	consent := b.create(TeamAshton, "consent_events",
		kv{"person_id", person.ID}, kv{"scope", "sp_referral"}, kv{"decision", "given"}, kv{"given_by", "person"},
		kv{"method", "verbal"}, kv{"recorded_by", worker}, kv{"recorded_at", datetime(at)})
	b.write(referral, "consent_event_id", consent.ID)
	return person, referral
}

// ashtonEpisode schedules the appointments after a drop-in referral: a
// practice appointment with ONS4, onward referrals, and a final review with
// ONS4 again when there is time.
func (g *gen) ashtonEpisode(worker string, person, referral *crdt.Record, opened time.Time, needs []string, orgIDs *[]string) {
	base := map[string]int{
		"ons4_life_satisfaction": g.between(2, 6), "ons4_worthwhile": g.between(3, 7),
		"ons4_happy": g.between(2, 6), "ons4_anxious": g.between(5, 9),
	}
	t1 := g.after(opened, g.between(5, 9))
	if t1.After(g.now.Add(-24 * time.Hour)) {
		return
	}
	var goals []*crdt.Record
	g.at(t1, worker, func(b *batch) {
		c := g.visit(b, TeamAshton, person, referral, worker, "practice_appointment", "initial_what_matters", t1, 60, "")
		b.write(referral, "status", "active")
		b.write(referral, "first_contact_date", date(t1))
		b.append(referral, "status_events", map[string]any{"status": "active", "at": datetime(t1)})
		a := g.assessment(b, TeamAshton, person, referral, c, schema.InstrumentONS4, "baseline", schema.AdministeredBySelf, t1, base)
		b.add(c, "assessment_ids", a.ID)
		plan := b.create(TeamAshton, "care_plans",
			kv{"person_id", person.ID}, kv{"referral_id", referral.ID}, kv{"what_matters_to_me", g.pick(whatMatters)},
			kv{"agreed_with_person_at", datetime(t1)}, kv{"plan_version", 1})
		b.add(plan, "shared_with", "person")
		for _, n := range needs {
			nr := b.create(TeamAshton, "needs",
				kv{"person_id", person.ID}, kv{"referral_id", referral.ID}, kv{"category", n},
				kv{"description", needWords[n]}, kv{"identified_by", "person"}, kv{"status", "being_addressed"})
			gr := b.create(TeamAshton, "goals",
				kv{"person_id", person.ID}, kv{"care_plan_id", plan.ID}, kv{"statement", goalWords[n]},
				kv{"status", "in_progress"}, kv{"person_importance", g.between(6, 10)})
			b.add(gr, "need_ids", nr.ID)
			goals = append(goals, gr)
			kind := g.weighted([]string{"referral", "signpost", "supported_introduction"}, []int{4, 5, 1})
			o := b.create(TeamAshton, "onward_referrals",
				kv{"person_id", person.ID}, kv{"referral_id", referral.ID}, kv{"goal_id", gr.ID},
				kv{"organisation_id", g.orgFor(n, ashtonOrgs, *orgIDs)}, kv{"kind", kind}, kv{"status", "sent"},
				kv{"sent_at", datetime(t1)})
			if kind != "signpost" {
				b.write(o, "consent_to_share", true)
				b.add(o, "data_shared", "name", "phone")
			}
			b.append(o, "status_events", map[string]any{"status": "sent", "at": datetime(t1)})
		}
	})
	t2 := g.after(t1, g.between(14, 21))
	if t2.After(g.now.Add(-24 * time.Hour)) {
		return
	}
	final := map[string]int{}
	for _, k := range ons4Items {
		v := base[k]
		if k == "ons4_anxious" {
			final[k] = max(0, v-g.between(0, 3))
		} else {
			final[k] = min(10, v+g.between(0, 3))
		}
	}
	g.at(t2, worker, func(b *batch) {
		c := g.visit(b, TeamAshton, person, referral, worker, "telephone", "final_review_exit", t2, 20, "")
		a := g.assessment(b, TeamAshton, person, referral, c, schema.InstrumentONS4, "final", schema.AdministeredBySelf, t2, final)
		b.add(c, "assessment_ids", a.ID)
		for _, gr := range goals {
			b.write(gr, "status", g.weighted([]string{"achieved", "partly_achieved"}, []int{2, 1}))
		}
		b.write(referral, "status", "closed")
		b.write(referral, "closed_date", date(t2))
		b.write(referral, "closure_reason", g.weighted([]string{"goals_met", "plan_completed", "did_not_engage"}, []int{5, 3, 1}))
		b.append(referral, "status_events", map[string]any{"status": "closed", "at": datetime(t2)})
	})
}

// directoryConflict leaves a non-clinical conflict in the directory: both
// link workers, from the same synced entry, update the first
// organisation's schedule differently. Views may show the winner of a
// non-clinical conflict; the review still lists it.
func (g *gen) directoryConflict(orgIDs *[]string) {
	var org, view *crdt.Record
	t := g.workTime(20)
	g.at(t, "farah", func(b *batch) {
		org = g.records[recordKey{TeamAshton, "organisations", (*orgIDs)[0]}]
		view = org.Clone()
		b.write(org, "schedule", "Tuesdays and Thursdays 10:00-12:00")
	})
	g.at(t.Add(2*time.Hour), "gareth", func(b *batch) {
		b.writeFrom(view, org, "schedule", "Tuesdays 10:00-12:00; Thursdays by phone")
	})
	g.finish = append(g.finish, func() {
		g.ds.Conflicts = append(g.ds.Conflicts, Conflict{
			Team: TeamAshton, Collection: "organisations", Record: org.ID, Field: "schedule",
			Note: ashtonOrgs[0].name + ": farah and gareth updated the session times differently from the same entry (not clinical)",
		})
	})
}
