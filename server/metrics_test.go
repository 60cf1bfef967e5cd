package server

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// TestMetricsParse scrapes /metrics after a few requests and parses it with
// Prometheus's own text parser: the runtime and process collectors are
// there, the route histogram counts the requests, and the state gauges
// (conflicts per team, quarantine, store size, devices) are exposed.
func TestMetricsParse(t *testing.T) {
	s := newTestServer(t, nil)
	if _, err := s.auth.CreateTeam(context.Background(), "wigan", "Wigan Frailty"); err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s.Handler())
	defer ts.Close()
	for range 3 {
		res, err := http.Get(ts.URL + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
	}
	res, err := http.Get(ts.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("status %d", res.StatusCode)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(res.Body)
	if err != nil {
		t.Fatalf("metrics do not parse: %v", err)
	}
	for _, name := range []string{
		"go_goroutines", "process_resident_memory_bytes", "go_memstats_heap_inuse_bytes",
		"doorstep_http_requests_total", "doorstep_http_request_duration_seconds",
		"doorstep_conflicts_open", "doorstep_quarantine_ops", "doorstep_store_bytes", "doorstep_devices_active",
	} {
		if fams[name] == nil {
			t.Errorf("no %s", name)
		}
	}
	h := fams["doorstep_http_request_duration_seconds"]
	if h == nil {
		t.FailNow()
	}
	found := false
	for _, m := range h.Metric {
		labels := map[string]string{}
		for _, l := range m.Label {
			labels[l.GetName()] = l.GetValue()
		}
		if labels["route"] == "/healthz" && labels["method"] == "GET" {
			found = true
			if n := m.GetHistogram().GetSampleCount(); n != 3 {
				t.Errorf("healthz histogram count %d, want 3", n)
			}
		}
	}
	if !found {
		t.Error("no histogram series for GET /healthz")
	}
	c := fams["doorstep_conflicts_open"]
	if len(c.Metric) != 1 || c.Metric[0].Label[0].GetValue() != "wigan" || c.Metric[0].GetGauge().GetValue() != 0 {
		t.Errorf("conflicts_open: %v", c.Metric)
	}
}
