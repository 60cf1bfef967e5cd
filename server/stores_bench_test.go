package server

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	gosync "sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/auth"
	"github.com/doorstep-health/doorstep/crdt"
	"github.com/doorstep-health/doorstep/internal/pgtest"
	"github.com/doorstep-health/doorstep/store/postgres"
	dsync "github.com/doorstep-health/doorstep/sync"
)

// storeBackends are the backends BenchmarkStores compares in one run.
var storeBackends = []string{"badger", "postgres"}

// benchServerOn starts a server on backend with its handler on a loopback
// HTTP server: Badger under a temp dir, or both stores in a fresh
// database of the package's private PostgreSQL cluster.
func benchServerOn(b *testing.B, backend string) (*Server, *httptest.Server) {
	b.Helper()
	url := ""
	if backend == "postgres" {
		url = pgtest.NewDB(b)
	}
	return benchServerAt(b, url)
}

// benchServerAt starts a server on the PostgreSQL database at url, or on
// Badger when url is empty.
func benchServerAt(b *testing.B, url string) (*Server, *httptest.Server) {
	b.Helper()
	s := newTestServer(b, func(c *Config) {
		c.DeviceRate, c.AuthRate, c.NoSchema = -1, -1, true
		if url == "" {
			return
		}
		ctx := context.Background()
		rec, err := postgres.Open(ctx, url, postgres.Options{Table: "doorstep_kv"})
		if err != nil {
			b.Fatal(err)
		}
		au, err := postgres.Open(ctx, url, postgres.Options{Table: "doorstep_auth"})
		if err != nil {
			b.Fatal(err)
		}
		c.Records, c.AuthStore = rec, au
	})
	hs := httptest.NewServer(s.Handler())
	b.Cleanup(hs.Close)
	return s, hs
}

// benchDevice is one logged-in device of the benchmark.
type benchDevice struct {
	token  string
	id     crdt.ReplicaID
	user   string
	clock  *crdt.Clock
	seq    uint64
	cursor []byte
}

func benchLogin(b *testing.B, s *Server, name string) *benchDevice {
	b.Helper()
	ctx := context.Background()
	u, err := s.auth.CreateUser(ctx, auth.NewUser{Username: name, Password: "long enough", Role: api.RoleLinkWorker, Teams: []string{"wigan"}})
	if err != nil {
		b.Fatal(err)
	}
	id := crdt.NewReplicaID()
	tr, err := s.auth.Login(ctx, name, "long enough", id.String(), name)
	if err != nil {
		b.Fatal(err)
	}
	return &benchDevice{token: tr.AccessToken, id: id, user: u.ID, clock: crdt.NewClock(time.Now, time.Minute)}
}

// benchOps are n register writes by d, ten fields per record, on records
// named prefix-pK.
func (d *benchDevice) ops(prefix string, n int) []crdt.Op {
	ops := make([]crdt.Op, n)
	for i := range ops {
		ops[i] = crdt.Op{ID: crdt.OpID{Time: d.clock.Now(), Replica: d.id}, Team: "wigan", Collection: "people",
			Record: fmt.Sprintf("%s-p%d", prefix, i/10), Field: []string{"given_name", "family_name", "preferred_name", "phone", "email",
				"preferred_language", "temporary_address", "communication_needs", "household_notes", "risk_notes"}[i%10],
			Kind: crdt.KindWrite, Value: crdt.MustValue(fmt.Sprintf("value %d", i))}
	}
	return ops
}

// post sends one sync request over loopback HTTP and decodes the reply
// whole, pulled ops and snapshot records included, as a device does.
func (d *benchDevice) post(b *testing.B, client *http.Client, url string, req *api.SyncRequest) *api.SyncResponse {
	resp, err := d.tryPost(client, url, req)
	if err != nil {
		b.Fatal(err)
	}
	return resp
}

func (d *benchDevice) tryPost(client *http.Client, url string, req *api.SyncRequest) (*api.SyncResponse, error) {
	body, err := msgpack.Marshal(req)
	if err != nil {
		return nil, err
	}
	hr, _ := http.NewRequest(http.MethodPost, url+"/v1/sync", bytes.NewReader(body))
	hr.Header.Set("Content-Type", api.ContentType)
	hr.Header.Set("Authorization", "Bearer "+d.token)
	res, err := client.Do(hr)
	if err != nil {
		return nil, err
	}
	rb, err := io.ReadAll(res.Body)
	res.Body.Close()
	if err != nil || res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("sync: %d %v %q", res.StatusCode, err, rb)
	}
	var resp api.SyncResponse
	if err := msgpack.Unmarshal(rb, &resp); err != nil {
		return nil, err
	}
	for _, c := range resp.Changes {
		if _, err := c.Ops.Ops(); err != nil {
			return nil, err
		}
	}
	for _, r := range resp.Snapshot {
		if _, err := r.Record(); err != nil {
			return nil, err
		}
	}
	return &resp, nil
}

func (d *benchDevice) request(changes ...api.Change) *api.SyncRequest {
	return &api.SyncRequest{Protocol: api.ProtocolVersion, Replica: d.id, Clock: d.clock.Now(), Cursor: d.cursor, Changes: changes}
}

// BenchmarkStores runs the same three workloads on every backend in one
// run, over loopback HTTP through the whole handler stack with durable
// commits (docs/benchmarks.md, "Badger and PostgreSQL"):
//
//   - ingest: 16 devices each push changes of 500 new register writes,
//     one change per request, concurrently (field ops/s);
//   - reconnect: a device pushes one change of 500 ops and pulls the
//     2,000 a colleague pushed meanwhile, in one request;
//   - bootstrap: a new device joins a team of 5,000 people with 20 fields
//     each and pulls snapshot pages until it follows the log;
//   - ingest-2servers (PostgreSQL only): ingest with the devices split
//     over two servers sharing the database.
func BenchmarkStores(b *testing.B) {
	for _, backend := range storeBackends {
		b.Run("store="+backend, func(b *testing.B) {
			b.Run("ingest", func(b *testing.B) { benchIngest(b, backend) })
			b.Run("reconnect", func(b *testing.B) { benchReconnect(b, backend) })
			b.Run("bootstrap", func(b *testing.B) { benchBootstrap(b, backend) })
			if backend == "postgres" {
				b.Run("ingest-2servers", benchIngestTwoServers)
			}
		})
	}
}

func benchIngest(b *testing.B, backend string) {
	url := ""
	if backend == "postgres" {
		url = pgtest.NewDB(b)
	}
	s, hs := benchServerAt(b, url)
	ingest(b, []*Server{s}, []*httptest.Server{hs}, url)
}

// benchIngestTwoServers is ingest with two servers on one PostgreSQL
// database, the 16 devices split between them: write transactions are
// serialized across servers, so this shows what a second server adds to
// push throughput.
func benchIngestTwoServers(b *testing.B) {
	url := pgtest.NewDB(b)
	s1, h1 := benchServerAt(b, url)
	s2, h2 := benchServerAt(b, url)
	ingest(b, []*Server{s1, s2}, []*httptest.Server{h1, h2}, url)
}

// ingest: 16 devices (spread over the servers, which share one store)
// push b.N changes of 500 new register writes between them. On
// PostgreSQL (url set) it also reports the WAL fsyncs per push, from
// pg_stat_wal: group commit shares them when it is below 1.
func ingest(b *testing.B, servers []*Server, hss []*httptest.Server, url string) {
	if _, err := servers[0].auth.CreateTeam(context.Background(), "wigan", "Wigan"); err != nil {
		b.Fatal(err)
	}
	const devices, opsPer = 16, 500
	devs := make([]*benchDevice, devices)
	for i := range devs {
		devs[i] = benchLogin(b, servers[0], fmt.Sprintf("u%d", i))
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: devices}}
	work := make(chan int)
	var wg gosync.WaitGroup
	syncs0 := walSyncs(b, url)
	var st0, au0 []postgres.Stats
	for _, s := range servers {
		if kv, ok := s.cfg.Records.(*postgres.KV); ok {
			st0 = append(st0, kv.Stats())
			au0 = append(au0, s.cfg.AuthStore.(*postgres.KV).Stats())
		}
	}
	b.ResetTimer()
	for n, d := range devs {
		url := hss[n%len(hss)].URL
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				d.seq++
				resp, err := d.tryPost(client, url, d.request(api.Change{Seq: d.seq, Ops: d.ops(fmt.Sprintf("%x-%d", d.id[:4], i), opsPer)}))
				if err != nil {
					b.Error(err)
					continue
				}
				if len(resp.Results) != 1 || resp.Results[0].Status != api.ChangeApplied {
					b.Errorf("push: %+v", resp.Results)
				}
			}
		}()
	}
	for i := 0; i < b.N; i++ {
		work <- i
	}
	close(work)
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(b.N*opsPer)/b.Elapsed().Seconds(), "fieldops/s")
	if url != "" {
		time.Sleep(1500 * time.Millisecond) // backends report WAL statistics at most once a second
		b.ReportMetric(float64(walSyncs(b, url)-syncs0)/float64(b.N), "fsyncs/push")
		var commits, gets, authCommits, authGets int64
		for i, s := range servers {
			st := s.cfg.Records.(*postgres.KV).Stats()
			commits += st.Commits - st0[i].Commits
			gets += st.Gets - st0[i].Gets
			au := s.cfg.AuthStore.(*postgres.KV).Stats()
			authCommits += au.Commits - au0[i].Commits
			authGets += au.Gets - au0[i].Gets
		}
		n := float64(b.N)
		b.ReportMetric(float64(commits)/n, "commits/push")
		b.ReportMetric(float64(gets)/n, "gets/push")
		b.ReportMetric(float64(authCommits)/n, "authcommits/push")
		b.ReportMetric(float64(authGets)/n, "authgets/push")
	}
}

// walSyncs is the cluster's count of WAL fsyncs so far (0 without url).
func walSyncs(b *testing.B, url string) int64 {
	if url == "" {
		return 0
	}
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int64
	if err := conn.QueryRow(ctx, "SELECT wal_sync FROM pg_stat_wal").Scan(&n); err != nil {
		b.Fatal(err)
	}
	return n
}

func benchReconnect(b *testing.B, backend string) {
	ctx := context.Background()
	s, hs := benchServerOn(b, backend)
	if _, err := s.auth.CreateTeam(ctx, "wigan", "Wigan"); err != nil {
		b.Fatal(err)
	}
	ann, bea := benchLogin(b, s, "ann"), benchLogin(b, s, "bea")
	client := &http.Client{}
	for more := true; more; { // ann bootstraps (an empty team)
		resp := ann.post(b, client, hs.URL, ann.request())
		ann.cursor, more = resp.Cursor, resp.More
	}
	beaCaller := dsync.Caller{User: bea.user, Replica: bea.id, Teams: []string{"wigan"}}
	var pulled int
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		for j := 0; j < 4; j++ { // while ann was away, bea pushed 2,000 ops in four changes
			bea.seq++
			if _, err := s.engine.Push(ctx, beaCaller, []api.Change{{Seq: bea.seq, Ops: bea.ops(fmt.Sprintf("b%d-%d", i, j), 500)}}); err != nil {
				b.Fatal(err)
			}
		}
		ann.seq++
		req := ann.request(api.Change{Seq: ann.seq, Ops: ann.ops(fmt.Sprintf("a%d", i), 500)})
		req.PullLimit = 2000
		b.StartTimer()
		resp := ann.post(b, client, hs.URL, req)
		b.StopTimer()
		if resp.Results[0].Status != api.ChangeApplied {
			b.Fatalf("push: %+v", resp.Results)
		}
		ann.cursor = resp.Cursor
		for _, c := range resp.Changes {
			pulled += c.Ops.Len()
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(pulled)/float64(b.N), "pulled/op")
}

func benchBootstrap(b *testing.B, backend string) {
	ctx := context.Background()
	s, hs := benchServerOn(b, backend)
	if _, err := s.auth.CreateTeam(ctx, "wigan", "Wigan"); err != nil {
		b.Fatal(err)
	}
	const people, fields = 5000, 20
	writer := benchLogin(b, s, "writer")
	wc := dsync.Caller{User: writer.user, Replica: writer.id, Teams: []string{"wigan"}}
	// The team: pushed through the engine in changes of 50 people.
	for p := 0; p < people; p += 50 {
		var ops []crdt.Op
		for q := p; q < p+50; q++ {
			for f := 0; f < fields; f++ {
				ops = append(ops, crdt.Op{ID: crdt.OpID{Time: writer.clock.Now(), Replica: writer.id}, Team: "wigan", Collection: "people",
					Record: fmt.Sprintf("person-%05d", q), Field: fmt.Sprintf("f%02d", f), Kind: crdt.KindWrite,
					Value: crdt.MustValue(fmt.Sprintf("person %d field %d, a value of ordinary length", q, f))})
			}
		}
		writer.seq++
		if _, err := s.engine.Push(ctx, wc, []api.Change{{Seq: writer.seq, Ops: ops}}); err != nil {
			b.Fatal(err)
		}
	}
	client := &http.Client{}
	b.ResetTimer()
	var records, pages int
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		d := benchLogin(b, s, fmt.Sprintf("new%d", i))
		b.StartTimer()
		for more := true; more; {
			resp := d.post(b, client, hs.URL, d.request())
			d.cursor, more = resp.Cursor, resp.More
			records += len(resp.Snapshot)
			pages++
		}
	}
	if records != people*b.N {
		b.Fatalf("bootstrap returned %d records, want %d", records, people*b.N)
	}
	b.ReportMetric(float64(pages)/float64(b.N), "pages/op")
}
