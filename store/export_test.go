package store

// Hooks for the external tests (migrate_test.go).
var (
	Migrations   = migrations
	VersionBytes = versionBytes
)
