package store

import "time"

// Hooks for the external tests (migrate_test.go).
var (
	Migrations   = migrations
	VersionBytes = versionBytes
)

// SetOverlayClock sets the clock o measures expiry by (overlay_test.go).
func SetOverlayClock(o *Overlay, now func() time.Time) { o.now = now }
