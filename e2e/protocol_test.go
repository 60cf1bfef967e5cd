package e2e

import (
	"bytes"
	"encoding/hex"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/crdt"
	"github.com/vmihailenco/msgpack/v5"
)

// exampleRequest is the worked example of docs/PROTOCOL.md: a device
// pushing one change with one op.
func exampleRequest(t *testing.T) (*api.SyncRequest, []byte) {
	t.Helper()
	replica, err := crdt.ParseReplicaID("00112233445566778899aabbccddeeff")
	if err != nil {
		t.Fatal(err)
	}
	ts := crdt.MakeTimestamp(time.Date(2026, 11, 21, 9, 30, 0, 0, time.UTC).UnixMilli(), 0)
	op := crdt.Op{
		ID:   crdt.OpID{Time: ts, Replica: replica},
		Team: "wigan", Collection: "people", Record: "p1", Field: "given_name",
		Kind: crdt.KindWrite, Value: crdt.MustValue("Edna"),
	}
	req := &api.SyncRequest{
		Protocol: api.ProtocolVersion, Replica: replica, Clock: ts,
		Changes: []api.Change{{Seq: 1, Ops: []crdt.Op{op}}},
	}
	var buf bytes.Buffer
	enc := msgpack.NewEncoder(&buf)
	enc.UseCompactInts(true)
	if err := enc.Encode(req); err != nil {
		t.Fatal(err)
	}
	return req, buf.Bytes()
}

// exampleHex is the request above, as docs/PROTOCOL.md shows it.
const exampleHex = `84a17601a164c41000112233445566778899aabbccddeeffa168cf01a1fd70f1c00000a1639182a17301a16f9187a169c41801a1fd70f1c0000000112233445566778899aabbccddeeffa174a5776967616ea163a670656f706c65a172a27031a166aa676976656e5f6e616d65a16b01a176a445646e61`

// TestProtocolExample keeps docs/PROTOCOL.md true: the documented bytes are
// what Go encodes, decode back to the same request, and a real server
// accepts them.
func TestProtocolExample(t *testing.T) {
	req, b := exampleRequest(t)
	if got := hex.EncodeToString(b); got != exampleHex {
		t.Fatalf("example encodes to\n%s\nwant\n%s", got, exampleHex)
	}
	doc, err := os.ReadFile("../docs/PROTOCOL.md")
	if err != nil {
		t.Fatal(err)
	}
	flat := strings.Join(strings.Fields(string(doc)), "")
	// The doc shows the bytes in lines of hex pairs; compare without spaces.
	if !strings.Contains(flat, exampleHex) {
		t.Fatalf("docs/PROTOCOL.md does not show the example bytes %s", exampleHex)
	}
	var back api.SyncRequest
	if err := msgpack.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.Replica != req.Replica || len(back.Changes) != 1 || back.Changes[0].Ops[0].ID != req.Changes[0].Ops[0].ID {
		t.Fatalf("decoded %+v", back)
	}
	// A server accepts the documented bytes from a device logged in with
	// that replica ID.
	e := newEnv(t)
	var tr api.TokenResponse
	if st, p := e.doJSON(http.MethodPost, "/v1/auth/login", "", api.LoginRequest{Username: "ann", Password: password, DeviceID: req.Replica.String()}, &tr); st != http.StatusOK {
		t.Fatalf("login: %d %+v", st, p)
	}
	st, resp, p := e.postSync(tr.AccessToken, b, nil)
	if st != http.StatusOK || len(resp.Results) != 1 || resp.Results[0].Status != api.ChangeApplied {
		t.Fatalf("server: %d %+v %+v", st, resp, p)
	}
	// As the doc says: the first sync bootstraps, and the snapshot already
	// holds the write just pushed.
	var found bool
	for _, raw := range resp.Snapshot {
		r, err := raw.Record()
		if err != nil {
			t.Fatalf("decode snapshot record: %v", err)
		}
		found = found || (r.ID == "p1" && r.Field("given_name") != nil)
	}
	if !found || len(resp.Cursor) == 0 {
		t.Fatalf("reply snapshot %+v cursor %x", resp.Snapshot, resp.Cursor)
	}
	t.Logf("reply: %d bytes", len(encode(t, resp)))
}
