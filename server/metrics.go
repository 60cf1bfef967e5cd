package server

import (
	"context"
	"net/http"
	"slices"
	"strconv"
	gosync "sync"
	"time"

	"github.com/doorstep-health/doorstep/api"
	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metric label bounds. Every label set is bounded: route templates (echo's
// registered paths, or "unmatched"), status codes, methods, and at most
// maxTeamLabels team IDs (the rest are summed under team="_other").
const (
	maxTeamLabels    = 100
	maxTrackedDevice = 100_000
	activeWindow     = 24 * time.Hour
	statsTimeout     = 5 * time.Second
)

// latencyBuckets are the upper bounds, in seconds, of the route and sync
// latency histograms: from a cached read to a slow tablet's big push.
var latencyBuckets = []float64{.005, .01, .02, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}

// metrics are the server's Prometheus collectors, on a registry of the
// server's own (so that several servers in one process, as in tests, never
// collide). They hold only aggregates: no user, device or record ID appears
// in a label.
type metrics struct {
	reg *prometheus.Registry

	requests *prometheus.CounterVec   // route, status
	latency  *prometheus.HistogramVec // route, method
	sync     prometheus.Histogram

	changesApplied, changesDuplicate, changesRefused prometheus.Counter
	opsPushed, opsNotMerged, itemsPulled             prometheus.Counter
	rateLimited                                      *prometheus.CounterVec // limit
	pipelined                                        *prometheus.CounterVec // prepared: "true" if read and prepared before its wait (pipeline.go)

	mu      gosync.Mutex
	devices map[string]time.Time // device → last authenticated request
}

func newMetrics(s *Server) *metrics {
	m := &metrics{reg: prometheus.NewRegistry(), devices: map[string]time.Time{}}
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "doorstep_http_requests_total", Help: "HTTP requests by route template and status.",
	}, []string{"route", "status"})
	m.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "doorstep_http_request_duration_seconds", Help: "Time spent serving requests, by route template and method.",
		Buckets: latencyBuckets,
	}, []string{"route", "method"})
	m.sync = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "doorstep_sync_duration_seconds", Help: "Time the engine spent on successful syncs (push and pull), body decoding excluded.",
		Buckets: latencyBuckets,
	})
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
	}
	m.changesApplied = counter("doorstep_sync_changes_applied_total", "Pushed changes applied.")
	m.changesDuplicate = counter("doorstep_sync_changes_duplicate_total", "Pushed changes already applied before (retries).")
	m.changesRefused = counter("doorstep_sync_changes_refused_total", "Pushed changes refused (seq gaps and the like).")
	m.opsPushed = counter("doorstep_sync_ops_pushed_total", "Ops received in pushed changes.")
	m.opsNotMerged = counter("doorstep_sync_ops_not_merged_total", "Pushed ops quarantined or refused.")
	m.itemsPulled = counter("doorstep_sync_items_pulled_total", "Ops and snapshot records sent to devices.")
	m.rateLimited = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "doorstep_rate_limited_total", Help: "Requests refused by a rate limit (device: per device; auth: per client address).",
	}, []string{"limit"})
	m.pipelined = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "doorstep_sync_pipelined_total", Help: "Pipelined sync requests (Doorstep-After-Seq), by whether they were read and prepared before waiting for the one before (prepared=\"true\") or waited before their body (\"false\").",
	}, []string{"prepared"})
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.requests, m.latency, m.sync,
		m.changesApplied, m.changesDuplicate, m.changesRefused, m.opsPushed, m.opsNotMerged, m.itemsPulled,
		m.rateLimited, m.pipelined,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "doorstep_sync_pipelined_held_bytes", Help: "Body bytes held by pipelined sync requests read and prepared while they wait for the one before (bounded by PipelineHoldBytes per device).",
		}, func() float64 { return float64(s.pipe.heldBytes()) }),
		&stateCollector{s: s},
	)
	return m
}

// observe records one served request.
func (m *metrics) observe(route, method string, status int, d time.Duration) {
	if route == "" {
		route = "unmatched"
	}
	m.requests.WithLabelValues(route, strconv.Itoa(status)).Inc()
	m.latency.WithLabelValues(route, method).Observe(d.Seconds())
}

// seen notes an authenticated request from device, for the active-devices
// gauge. The map is bounded: when full, entries older than the window go,
// and if none are that old the map is cleared (the gauge then undercounts
// until devices come back, which is safe).
func (m *metrics) seen(device string, now time.Time) {
	if device == "" {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.devices[device]; !ok && len(m.devices) >= maxTrackedDevice {
		m.pruneLocked(now)
		if len(m.devices) >= maxTrackedDevice {
			clear(m.devices)
		}
	}
	m.devices[device] = now
}

func (m *metrics) pruneLocked(now time.Time) {
	for k, t := range m.devices {
		if now.Sub(t) > activeWindow {
			delete(m.devices, k)
		}
	}
}

func (m *metrics) activeDevices(now time.Time) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.pruneLocked(now)
	return len(m.devices)
}

// syncTimer is the sync latency histogram as the sync handler uses it.
type syncTimer struct{ h prometheus.Histogram }

func (t syncTimer) observe(d time.Duration) { t.h.Observe(d.Seconds()) }

func (m *metrics) syncResult(resp *api.SyncResponse, pushedOps int) {
	m.opsPushed.Add(float64(pushedOps))
	for _, r := range resp.Results {
		switch r.Status {
		case api.ChangeApplied:
			m.changesApplied.Inc()
		case api.ChangeDuplicate:
			m.changesDuplicate.Inc()
		default:
			m.changesRefused.Inc()
		}
		m.opsNotMerged.Add(float64(len(r.Ops)))
	}
	n := len(resp.Snapshot)
	for _, c := range resp.Changes {
		n += c.Ops.Len()
	}
	m.itemsPulled.Add(float64(n))
}

// stateCollector reads gauges of the stored state at scrape time: open
// conflicts per team, quarantine size, store size, active devices. A
// failed read is reported as a scrape error for that collector only.
type stateCollector struct{ s *Server }

var (
	descConflicts  = prometheus.NewDesc("doorstep_conflicts_open", "Records with an open conflict, per team (teams beyond the first 100 by ID summed as team=\"_other\").", []string{"team"}, nil)
	descQuarantine = prometheus.NewDesc("doorstep_quarantine_ops", "Ops held in the quarantine.", nil, nil)
	descStore      = prometheus.NewDesc("doorstep_store_bytes", "Record store size on disk by part (Badger's estimate: lsm, vlog).", []string{"part"}, nil)
	descDevices    = prometheus.NewDesc("doorstep_devices_active", "Devices that made an authenticated request in the last 24 h (since this process started).", nil, nil)
)

// Describe implements prometheus.Collector.
func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descConflicts
	ch <- descQuarantine
	ch <- descStore
	ch <- descDevices
}

// Collect implements prometheus.Collector.
func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(descDevices, prometheus.GaugeValue, float64(c.s.metrics.activeDevices(time.Now())))
	ctx, cancel := context.WithTimeout(context.Background(), statsTimeout)
	defer cancel()
	teams, err := c.s.auth.Teams(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(descConflicts, err)
		return
	}
	ids := make([]string, 0, len(teams))
	for _, t := range teams {
		ids = append(ids, t.ID)
	}
	slices.Sort(ids)
	st, err := c.s.engine.Stats(ctx, ids)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(descConflicts, err)
		return
	}
	other := 0
	for i, id := range ids {
		if i >= maxTeamLabels {
			other += st.Conflicts[id]
			continue
		}
		ch <- prometheus.MustNewConstMetric(descConflicts, prometheus.GaugeValue, float64(st.Conflicts[id]), id)
	}
	if len(ids) > maxTeamLabels {
		ch <- prometheus.MustNewConstMetric(descConflicts, prometheus.GaugeValue, float64(other), "_other")
	}
	ch <- prometheus.MustNewConstMetric(descQuarantine, prometheus.GaugeValue, float64(st.Quarantined))
	ch <- prometheus.MustNewConstMetric(descStore, prometheus.GaugeValue, float64(st.LSMBytes), "lsm")
	ch <- prometheus.MustNewConstMetric(descStore, prometheus.GaugeValue, float64(st.VlogBytes), "vlog")
}

// metricsHandler serves the registry in the Prometheus exposition format
// (content negotiated by promhttp; compression left to gzipResponses).
func (s *Server) metricsHandler() echo.HandlerFunc {
	h := promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{
		ErrorHandling:      promhttp.ContinueOnError,
		DisableCompression: true,
		ErrorLog:           promErrorLog{s},
	})
	return echo.WrapHandler(http.Handler(h))
}

// promErrorLog sends promhttp's scrape errors to slog.
type promErrorLog struct{ s *Server }

func (l promErrorLog) Println(v ...any) { l.s.log.Warn("metrics scrape", "error", v) }
