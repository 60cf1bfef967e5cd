package schema

import (
	"errors"
	"slices"
)

// Roles are the user roles a schema may name in settled_by. They are the
// role names of package api (a leaf package cannot import it; a test checks
// the two lists agree).
var Roles = []string{"link_worker", "coordinator", "admin"}

// DefaultSettledBy is who may settle a conflict on a clinical field whose
// schema entry has no settled_by: coordinators only. Clinical judgement
// belongs to the clinical lead of the team, not to an administrator of
// users and devices; a service that wants admins to settle, say,
// demographic fields lists "admin" there explicitly.
var DefaultSettledBy = []string{"coordinator"}

func buildSettledBy(fld *Field, ff fileField, depth int) error {
	if len(ff.SettledBy) == 0 {
		if fld.Clinical && depth == 0 {
			fld.SettledBy = slices.Clone(DefaultSettledBy)
		}
		return nil
	}
	switch {
	case depth > 0:
		return errors.New("settled_by on a property (conflicts are per field)")
	case !ff.Clinical:
		return errors.New("settled_by on a field that is not clinical (any team member settles its conflicts)")
	case ff.CRDT != "" && ff.CRDT != "register":
		return errors.New("settled_by on a " + ff.CRDT + " field (only registers have conflicts)")
	}
	var roles []string
	for _, r := range ff.SettledBy {
		if !slices.Contains(Roles, r) {
			return errors.New("settled_by names unknown role " + r)
		}
		if slices.Contains(roles, r) {
			return errors.New("settled_by names role " + r + " twice")
		}
		roles = append(roles, r)
	}
	fld.SettledBy = roles
	return nil
}

// SettledBy returns the roles that may settle a conflict on a field: the
// field's settled_by for a clinical field, nil for any other field or an
// unknown one (whose conflicts any team member may settle).
func (s *Schema) SettledBy(collection, field string) []string {
	f, ok := s.Field(collection, field)
	if !ok || !f.Clinical {
		return nil
	}
	return slices.Clone(f.SettledBy)
}

// MaySettle reports whether a user of role may settle a conflict on the
// field: always for a field that is not clinical (or not in the schema),
// and for a clinical field only when role is in its settled_by.
func (s *Schema) MaySettle(collection, field, role string) bool {
	f, ok := s.Field(collection, field)
	if !ok || !f.Clinical {
		return true
	}
	return slices.Contains(f.SettledBy, role)
}
