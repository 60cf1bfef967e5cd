package api

import "time"

// ChangedRecord is one entry of GET /v1/teams/{team}/records: a record at
// its last change, who made it from which device, the device's time for
// it and the server's receive time.
type ChangedRecord struct {
	Team       string    `json:"team"`
	Collection string    `json:"collection"`
	ID         string    `json:"id"`
	Author     string    `json:"author"`
	AuthorName string    `json:"author_name,omitempty"`
	Device     string    `json:"device"`
	Time       time.Time `json:"time"`     // device (HLC) time of the change's latest op on the record
	Received   time.Time `json:"received"` // server receive time
	Reason     string    `json:"reason,omitempty"`
}

// ChangedPage is the reply of GET /v1/teams/{team}/records: a page of
// changed records, least recently changed first, and the cursor of the
// next page (absent on the last page).
type ChangedPage struct {
	Records []ChangedRecord `json:"records"`
	Next    string          `json:"next,omitempty"`
}

// PersonMatch is one person found by GET /v1/teams/{team}/search.
type PersonMatch struct {
	Team        string `json:"team"`
	Collection  string `json:"collection"`
	ID          string `json:"id"`
	Name        string `json:"name"`
	NHSNumber   string `json:"nhs_number,omitempty"`
	DateOfBirth string `json:"date_of_birth,omitempty"`
	Postcode    string `json:"postcode,omitempty"`
}

// SearchReply is the reply of GET /v1/teams/{team}/search.
type SearchReply struct {
	People []PersonMatch `json:"people"`
}

// OutcomePair is one person's first and latest score on one measure.
type OutcomePair struct {
	Measure       string    `json:"measure"` // an ONS4 item ID or "ucla3_total"
	First         int       `json:"first"`
	FirstAt       time.Time `json:"first_at"`
	Latest        int       `json:"latest"`
	LatestAt      time.Time `json:"latest_at"`
	Change        int       `json:"change"`
	Improved      bool      `json:"improved"`
	LowerIsBetter bool      `json:"lower_is_better"`
}

// PersonOutcomes is one person's outcome pairs.
type PersonOutcomes struct {
	PersonID string        `json:"person_id"`
	Pairs    []OutcomePair `json:"pairs"`
}

// MeasureSummary summarises one measure over a team. Measures are never
// summed together.
type MeasureSummary struct {
	Measure       string  `json:"measure"`
	People        int     `json:"people"`
	MeanFirst     float64 `json:"mean_first"`
	MeanLatest    float64 `json:"mean_latest"`
	Improved      int     `json:"improved"`
	Same          int     `json:"same"`
	Worse         int     `json:"worse"`
	LowerIsBetter bool    `json:"lower_is_better"`
}

// OutcomesReply is the reply of GET /v1/teams/{team}/outcomes: ONS4 (each
// item separately) and UCLA-3 first versus latest, proxy answers excluded.
type OutcomesReply struct {
	Team    string           `json:"team"`
	People  []PersonOutcomes `json:"people"`
	Summary []MeasureSummary `json:"summary"`
	Skipped int              `json:"skipped_responses"`
}
