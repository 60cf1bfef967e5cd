package main

import (
	"bytes"
	"context"
	"flag"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/doorstep-health/doorstep/server"
)

// TestHelpListsEveryConfigFlag: every server.Config field is either set by
// a serve flag or listed in configFieldsWithoutFlag with where it comes
// from, and `doorstep help` lists every serve flag with its environment
// variable (the DOORSTEP_OIDC_* ones included). A new Config field without
// a flag fails here.
func TestHelpListsEveryConfigFlag(t *testing.T) {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	o := serveFlags(fs, &server.Config{})
	ct := reflect.TypeFor[server.Config]()
	for i := range ct.NumField() {
		f := ct.Field(i)
		name, ok := o.configFlags[f.Name]
		if _, without := configFieldsWithoutFlag[f.Name]; !ok && !without {
			t.Errorf("server.Config.%s has no serve flag (add one in serveFlags, or say why not in configFieldsWithoutFlag)", f.Name)
		}
		if ok && fs.Lookup(name) == nil {
			t.Errorf("server.Config.%s: flag --%s not registered", f.Name, name)
		}
	}
	var out bytes.Buffer
	if err := run(context.Background(), []string{"help"}, env(nil), nil, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	help := out.String()
	fs.VisitAll(func(f *flag.Flag) {
		if !strings.Contains(help, "--"+f.Name+" ") || !strings.Contains(help, envName(f.Name)+"\n") {
			t.Errorf("help lacks --%s or %s", f.Name, envName(f.Name))
		}
	})
	for _, v := range []string{"DOORSTEP_OIDC_ISSUER", "DOORSTEP_OIDC_AUDIENCE", "DOORSTEP_OIDC_JWKS_URL", "DOORSTEP_PASSWORD", "DOORSTEP_DATA", "DOORSTEP_LOG_LEVEL"} {
		if !strings.Contains(help, v) {
			t.Errorf("help lacks %s", v)
		}
	}
}

// TestFlagsAndEnv: a variable sets its flag's Config field, a flag on the
// command line wins over its variable, and a bad value in a variable is an
// error naming the variable.
func TestFlagsAndEnv(t *testing.T) {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	var cfg server.Config
	o := serveFlags(fs, &cfg)
	if err := fs.Parse([]string{"--device-rate", "3"}); err != nil {
		t.Fatal(err)
	}
	e := env(map[string]string{"DOORSTEP_DEVICE_RATE": "7", "DOORSTEP_ACCESS_TTL": "2m", "DOORSTEP_MAX_SYNC_BODY": "1000",
		"DOORSTEP_MAX_MSGPACK_DEPTH": "8", "DOORSTEP_OIDC_ISSUER": "https://idp.example", "DOORSTEP_TRUST_PROXY": "true"})
	if err := applyEnv(fs, e); err != nil {
		t.Fatal(err)
	}
	if cfg.DeviceRate != 3 || cfg.AccessTTL != 2*time.Minute || cfg.MaxSyncBody != 1000 || !cfg.TrustProxy ||
		o.limitsOf().MaxDepth != 8 || o.oidcIssuer != "https://idp.example" {
		t.Fatalf("cfg %+v, options %+v", cfg, o)
	}
	if cfg.DeviceBurst != 40 || cfg.MaxJSONBody != 64<<10 {
		t.Fatalf("defaults not kept: burst %d, json %d", cfg.DeviceBurst, cfg.MaxJSONBody)
	}
	fs = flag.NewFlagSet("serve", flag.ContinueOnError)
	serveFlags(fs, &cfg)
	if err := applyEnv(fs, env(map[string]string{"DOORSTEP_AUTH_RATE": "fast"})); err == nil || !strings.Contains(err.Error(), "DOORSTEP_AUTH_RATE") {
		t.Fatalf("bad variable: %v", err)
	}
}
