package schema_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/schema"
)

func TestRolesMatchAPI(t *testing.T) {
	want := []string{api.RoleLinkWorker, api.RoleCoordinator, api.RoleAdmin}
	if !slices.Equal(schema.Roles, want) {
		t.Fatalf("schema.Roles = %v, api roles %v", schema.Roles, want)
	}
}

func TestDefaultSettledBy(t *testing.T) {
	s := schema.Default()
	for _, c := range s.Collections() {
		for _, f := range c.Fields {
			if f.Clinical && len(f.SettledBy) == 0 {
				t.Errorf("%s.%s is clinical without settled_by", c.Name, f.Name)
			}
			if !f.Clinical && f.SettledBy != nil {
				t.Errorf("%s.%s is not clinical but has settled_by %v", c.Name, f.Name, f.SettledBy)
			}
		}
	}
	cases := []struct {
		coll, field, role string
		want              bool
	}{
		{"people", "cfs", api.RoleCoordinator, true},
		{"people", "cfs", api.RoleLinkWorker, false},
		{"people", "cfs", api.RoleAdmin, false},
		{"people", "address", api.RoleAdmin, true},
		{"people", "address", api.RoleLinkWorker, false},
		{"people", "phone", api.RoleLinkWorker, true}, // not clinical
		{"people", "no_such_field", api.RoleLinkWorker, true},
	}
	for _, c := range cases {
		if got := s.MaySettle(c.coll, c.field, c.role); got != c.want {
			t.Errorf("MaySettle(%s.%s, %s) = %v, want %v", c.coll, c.field, c.role, got, c.want)
		}
	}
	if got := s.SettledBy("people", "cfs"); !slices.Equal(got, []string{"coordinator"}) {
		t.Errorf("SettledBy(cfs) = %v", got)
	}
	if got := s.SettledBy("people", "phone"); got != nil {
		t.Errorf("SettledBy(phone) = %v", got)
	}
}

func TestSettledByParse(t *testing.T) {
	file := func(field string) string {
		return `{"version":1,"collections":[{"name":"c","fields":[` + field + `]}]}`
	}
	s, err := schema.Parse([]byte(file(`{"name":"f","type":"int","clinical":true}`)))
	if err != nil {
		t.Fatal(err)
	}
	if got := s.SettledBy("c", "f"); !slices.Equal(got, schema.DefaultSettledBy) {
		t.Fatalf("default settled_by = %v", got)
	}
	s, err = schema.Parse([]byte(file(`{"name":"f","type":"int","clinical":true,"settled_by":["admin","link_worker"]}`)))
	if err != nil {
		t.Fatal(err)
	}
	if !s.MaySettle("c", "f", "link_worker") || s.MaySettle("c", "f", "coordinator") {
		t.Fatalf("explicit settled_by not honoured: %v", s.SettledBy("c", "f"))
	}
	// The round trip through JSON keeps it.
	b, err := s.JSON()
	if err != nil {
		t.Fatal(err)
	}
	if s2, err := schema.Parse(b); err != nil || !slices.Equal(s2.SettledBy("c", "f"), []string{"admin", "link_worker"}) {
		t.Fatalf("round trip: %v %v", err, s2)
	}
	for _, bad := range []struct{ field, want string }{
		{`{"name":"f","type":"int","settled_by":["coordinator"]}`, "not clinical"},
		{`{"name":"f","type":"int","clinical":true,"settled_by":["nurse"]}`, "unknown role"},
		{`{"name":"f","type":"int","clinical":true,"settled_by":["admin","admin"]}`, "twice"},
		{`{"name":"f","crdt":"set","type":"string","clinical":true,"settled_by":["admin"]}`, "set field"},
	} {
		if _, err := schema.Parse([]byte(file(bad.field))); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("Parse(%s) = %v, want an error with %q", bad.field, err, bad.want)
		}
	}
}
