package server

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/auth"
	"github.com/doorstep-health/doorstep/crdt"
)

func jpegBytes(t *testing.T, n int) ([]byte, string) {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	copy(b, []byte{0xff, 0xd8, 0xff, 0xe0, 0, 0x10, 'J', 'F', 'I', 'F', 0})
	s := sha256.Sum256(b)
	return b, hex.EncodeToString(s[:])
}

type blobClient struct {
	t     *testing.T
	url   string
	token string
}

func (c blobClient) do(method, path string, body []byte, hdr map[string]string) (*http.Response, []byte) {
	c.t.Helper()
	req, _ := http.NewRequest(method, c.url+path, bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+c.token)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res, b
}

func (c blobClient) patch(team, sum string, off, size int64, body []byte) (*http.Response, []byte) {
	return c.do(http.MethodPatch, "/v1/teams/"+team+"/blobs/"+sum, body, map[string]string{
		"Content-Type": api.BlobUploadContentType, api.HeaderUploadOffset: strconv.FormatInt(off, 10),
		api.HeaderUploadLength: strconv.FormatInt(size, 10), api.HeaderBlobRecord: "contacts/c-1",
	})
}

// TestBlobAccess: a device of another team cannot read, probe or
// overwrite a team's blob even knowing its hash; a revoked device is
// refused; executables are refused.
func TestBlobAccess(t *testing.T) {
	s := newTestServer(t, nil)
	ctx := context.Background()
	a := s.Auth()
	login := func(user, team string) (blobClient, crdt.ReplicaID) {
		if _, err := a.CreateTeam(ctx, team, team); err != nil {
			t.Fatal(err)
		}
		if _, err := a.CreateUser(ctx, auth.NewUser{Username: user, Name: user, Password: "long-password-1", Role: api.RoleLinkWorker, Teams: []string{team}}); err != nil {
			t.Fatal(err)
		}
		dev := crdt.NewReplicaID()
		tr, err := a.Login(ctx, user, "long-password-1", dev.String(), "tablet")
		if err != nil {
			t.Fatal(err)
		}
		return blobClient{t: t, token: tr.AccessToken}, dev
	}
	ts := httptest.NewServer(s.Handler())
	defer ts.Close()
	wigan, wiganDev := login("lw-wigan", "wigan")
	ashton, _ := login("lw-ashton", "ashton")
	wigan.url, ashton.url = ts.URL, ts.URL

	data, sum := jpegBytes(t, 100_000)
	if res, b := wigan.patch("wigan", sum, 0, int64(len(data)), data); res.StatusCode != 200 {
		t.Fatalf("upload: %d %s", res.StatusCode, b)
	}
	if res, b := wigan.do(http.MethodGet, "/v1/teams/wigan/blobs/"+sum, nil, nil); res.StatusCode != 200 || !bytes.Equal(b, data) || res.Header.Get("Content-Type") != "image/jpeg" {
		t.Fatalf("own download: %d, %d bytes, %s", res.StatusCode, len(b), res.Header.Get("Content-Type"))
	}

	// The other team, knowing the hash.
	for _, m := range []string{http.MethodGet, http.MethodHead} {
		if res, _ := ashton.do(m, "/v1/teams/wigan/blobs/"+sum, nil, nil); res.StatusCode != http.StatusForbidden {
			t.Errorf("ashton %s wigan's blob: %d, want 403", m, res.StatusCode)
		}
		if res, _ := ashton.do(m, "/v1/teams/ashton/blobs/"+sum, nil, nil); res.StatusCode != http.StatusNotFound {
			t.Errorf("ashton %s the hash in its own team: %d, want 404", m, res.StatusCode)
		}
	}
	evil, _ := jpegBytes(t, 100_000)
	if res, _ := ashton.patch("wigan", sum, 0, int64(len(evil)), evil); res.StatusCode != http.StatusForbidden {
		t.Errorf("ashton overwrite wigan's blob: %d, want 403", res.StatusCode)
	}
	if res, b := ashton.patch("ashton", sum, 0, int64(len(evil)), evil); res.StatusCode != http.StatusUnprocessableEntity {
		t.Errorf("ashton upload other bytes under the hash: %d %s, want 422 blob_hash_mismatch", res.StatusCode, b)
	}
	if _, b := wigan.do(http.MethodGet, "/v1/teams/wigan/blobs/"+sum, nil, nil); !bytes.Equal(b, data) {
		t.Fatal("wigan's blob changed")
	}

	// A wrong offset is told the right one.
	part, psum := jpegBytes(t, 5000)
	if res, _ := wigan.patch("wigan", psum, 0, 5000, part[:2000]); res.StatusCode != 200 || res.Header.Get(api.HeaderUploadOffset) != "2000" {
		t.Fatalf("partial: %d offset %s", res.StatusCode, res.Header.Get(api.HeaderUploadOffset))
	}
	if res, _ := wigan.patch("wigan", psum, 1000, 5000, part[1000:]); res.StatusCode != http.StatusConflict || res.Header.Get(api.HeaderUploadOffset) != "2000" {
		t.Fatalf("wrong offset: %d offset %s", res.StatusCode, res.Header.Get(api.HeaderUploadOffset))
	}
	if res, _ := wigan.do(http.MethodHead, "/v1/teams/wigan/blobs/"+psum, nil, nil); res.Header.Get(api.HeaderUploadOffset) != "2000" || res.Header.Get(api.HeaderBlobComplete) != "false" {
		t.Fatalf("head: %v", res.Header)
	}

	// An executable named by its own hash.
	exe := append([]byte("MZ\x90\x00"), make([]byte, 1000)...)
	esum := sha256.Sum256(exe)
	if res, b := wigan.patch("wigan", hex.EncodeToString(esum[:]), 0, int64(len(exe)), exe); res.StatusCode != http.StatusUnsupportedMediaType {
		t.Fatalf("executable: %d %s", res.StatusCode, b)
	}

	// Revoked.
	if _, err := a.RevokeDevice(ctx, wiganDev); err != nil {
		t.Fatal(err)
	}
	if res, _ := wigan.do(http.MethodGet, "/v1/teams/wigan/blobs/"+sum, nil, nil); res.StatusCode != http.StatusUnauthorized {
		t.Fatalf("revoked device download: %d, want 401", res.StatusCode)
	}
}
