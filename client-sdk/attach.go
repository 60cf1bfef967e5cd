package client

// Attachments: files (photos, signed forms, letters) attached to records.
// A record's attachment field holds only metadata (schema.Attachment); the
// bytes live in the replica's encrypted Badger in chunks, beside the
// records, and travel on the blob routes (docs/PROTOCOL.md §20) apart from
// sync, so a record never waits for its photo.
//
// Local keys (layout 1; new prefixes, no migration needed):
//
//	b/m/<team>\x00<sha256>           localBlob (msgpack): size, type, refs, state
//	b/d/<team>\x00<sha256>\x00<u32>  chunk i of the bytes, ChunkSize each
//	b/p/<team>\x00<sha256>           partialBlob: a download in progress (download.go)

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/crdt"
	"github.com/doorstep-health/doorstep/schema"
)

// Attachment limits and sizes.
const (
	// ChunkSize is the size of the pieces a file is stored in locally.
	ChunkSize = 256 << 10
	// UploadChunk is the most bytes one upload or download request
	// carries; requests are sized to the link below it (linkrate.go).
	UploadChunk = 4 << 20
	// DefaultMaxAttachment is the largest file Attach stores and
	// FetchAttachment downloads (32 MiB, the server's default limit).
	DefaultMaxAttachment = 32 << 20
	// maxUploadStalls is how many requests in a row may fail to move an
	// upload forward before UploadAttachments gives up on it for now.
	maxUploadStalls = 8
)

// Attachment errors.
var (
	// ErrAttachmentNotLocal: the file's bytes are not on this device yet;
	// FetchAttachment downloads them.
	ErrAttachmentNotLocal = errors.New("client: attachment not downloaded")
	// ErrAttachmentHash: downloaded bytes did not match the attachment's
	// size and SHA-256; nothing was kept.
	ErrAttachmentHash = errors.New("client: attachment hash mismatch")
)

var (
	prefBlobMeta = []byte("b/m/")
	prefBlobData = []byte("b/d/")
)

// AttachmentState is what a device can show about one attached file.
type AttachmentState int

// The attachment states.
const (
	// AttachmentNotDownloaded: the record names the file; its bytes are
	// only on the server.
	AttachmentNotDownloaded AttachmentState = iota
	// AttachmentPendingUpload: attached here, not yet all on the server.
	AttachmentPendingUpload
	// AttachmentLocal: the bytes are here and on the server.
	AttachmentLocal
)

func (s AttachmentState) String() string {
	switch s {
	case AttachmentPendingUpload:
		return "pending upload"
	case AttachmentLocal:
		return "local"
	}
	return "not downloaded"
}

// localBlob is the stored state of one file held on the device.
type localBlob struct {
	Team        string `msgpack:"t"`
	SHA256      string `msgpack:"h"`
	Size        int64  `msgpack:"n"`
	ContentType string `msgpack:"c"`
	Refs        []Ref  `msgpack:"r"`
	Uploaded    bool   `msgpack:"u"`
	// Acked is the byte count the server last acknowledged.
	Acked int64 `msgpack:"a"`
}

func blobMetaKey(team, sum string) []byte {
	return append(slices.Clone(prefBlobMeta), team+"\x00"+sum...)
}

func blobChunkKey(team, sum string, i uint32) []byte {
	k := append(slices.Clone(prefBlobData), team+"\x00"+sum+"\x00"...)
	return binary.BigEndian.AppendUint32(k, i)
}

func (r *Replica) maxAttachment() int64 { return DefaultMaxAttachment }

// Attach stores a file offline and writes its metadata to the record's
// attachment field: a log field gets it appended, a register set. The
// bytes are kept encrypted in the replica and queued for upload
// (UploadAttachments; Status counts what is pending). The content type is
// sniffed from the bytes (JPEG, PNG, HEIC or PDF, as the server does).
func (r *Replica) Attach(ctx context.Context, ref Ref, field string, data io.Reader, name string) (schema.Attachment, error) {
	if r.closed() {
		return schema.Attachment{}, ErrClosed
	}
	b, err := io.ReadAll(io.LimitReader(data, r.maxAttachment()+1))
	if err != nil {
		return schema.Attachment{}, fmt.Errorf("client: attach: read: %w", err)
	}
	if int64(len(b)) > r.maxAttachment() {
		return schema.Attachment{}, &LimitError{What: "attachment bytes", Limit: int(r.maxAttachment()), Size: len(b)}
	}
	if len(b) == 0 {
		return schema.Attachment{}, &ValidationError{Err: errors.New("empty file")}
	}
	ct, err := schema.SniffAttachment(b[:min(len(b), schema.SniffLen)])
	if err != nil {
		return schema.Attachment{}, &ValidationError{Err: err}
	}
	sum := sha256.Sum256(b)
	who := "device:" + r.id.String()
	if u, err := r.User(ctx); err == nil && u.ID != "" {
		who = u.ID
	}
	a := schema.Attachment{SHA256: hex.EncodeToString(sum[:]), Size: int64(len(b)), ContentType: ct,
		CapturedAt: r.now(), CapturedBy: who, Name: name}
	if err := a.Check(); err != nil {
		return schema.Attachment{}, &ValidationError{Err: err}
	}
	if _, err := r.Get(ctx, ref); err != nil {
		return schema.Attachment{}, err
	}
	if err := r.storeBlob(ref, a, b, false); err != nil {
		return schema.Attachment{}, err
	}
	write := r.Set
	if s, ok := r.opts.Validator.(*schema.Schema); ok {
		if f, ok := s.Field(ref.Collection, field); ok && f.CRDT == crdt.Log {
			write = r.Append
		}
	}
	if err := write(ctx, ref, field, a.Value()); err != nil {
		return schema.Attachment{}, err
	}
	r.refreshUploadStatus()
	return a, nil
}

// storeBlob writes the chunks, then the metadata (its presence says the
// bytes are all here), merging refs with a copy already held.
func (r *Replica) storeBlob(ref Ref, a schema.Attachment, b []byte, uploaded bool) error {
	n := uint32(0)
	for off := 0; off < len(b); {
		err := r.db.Update(func(txn *badger.Txn) error {
			for i := 0; i < 16 && off < len(b); i++ {
				end := min(off+ChunkSize, len(b))
				if err := txn.Set(blobChunkKey(ref.Team, a.SHA256, n), b[off:end]); err != nil {
					return err
				}
				n++
				off = end
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("client: store attachment: %w", err)
		}
	}
	return r.updateBlob(ref.Team, a.SHA256, func(lb *localBlob) bool {
		if lb.SHA256 == "" {
			*lb = localBlob{Team: ref.Team, SHA256: a.SHA256, Size: a.Size, ContentType: a.ContentType, Uploaded: uploaded}
			if uploaded {
				lb.Acked = a.Size
			}
		}
		if !slices.Contains(lb.Refs, ref) {
			lb.Refs = append(lb.Refs, ref)
		}
		return true
	})
}

// updateBlob runs a read-modify-write of one blob's metadata; fn returns
// false to delete it.
func (r *Replica) updateBlob(team, sum string, fn func(*localBlob) bool) error {
	r.blobMu.Lock()
	defer r.blobMu.Unlock()
	return r.db.Update(func(txn *badger.Txn) error {
		var lb localBlob
		raw, err := get(txn, blobMetaKey(team, sum))
		if err != nil {
			return err
		}
		if raw != nil {
			if err := msgpack.Unmarshal(raw, &lb); err != nil {
				return fmt.Errorf("client: attachment metadata: %w", err)
			}
		}
		if !fn(&lb) {
			return txn.Delete(blobMetaKey(team, sum))
		}
		out, err := msgpack.Marshal(&lb)
		if err != nil {
			return err
		}
		return txn.Set(blobMetaKey(team, sum), out)
	})
}

func (r *Replica) loadBlob(team, sum string) (*localBlob, error) {
	return loadMsgpack[localBlob](r, blobMetaKey(team, sum))
}

// loadMsgpack reads and decodes the msgpack value stored under key; nil
// when there is none.
func loadMsgpack[T any](r *Replica, key []byte) (*T, error) {
	var v *T
	err := r.view(func(txn *badger.Txn) error {
		raw, err := get(txn, key)
		if err != nil || raw == nil {
			return err
		}
		v = new(T)
		return msgpack.Unmarshal(raw, v)
	})
	return v, err
}

func (r *Replica) blobs() ([]localBlob, error) {
	var out []localBlob
	err := r.view(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefBlobMeta, PrefetchValues: true})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			var lb localBlob
			if err := it.Item().Value(func(v []byte) error { return msgpack.Unmarshal(v, &lb) }); err != nil {
				return err
			}
			out = append(out, lb)
		}
		return nil
	})
	return out, err
}

// AttachmentStatus says whether the team's file named sha256 is here, and
// whether it has reached the server.
func (r *Replica) AttachmentStatus(ctx context.Context, team, sha string) (AttachmentState, error) {
	lb, err := r.loadBlob(team, sha)
	switch {
	case err != nil:
		return 0, err
	case lb == nil:
		return AttachmentNotDownloaded, nil
	case !lb.Uploaded:
		return AttachmentPendingUpload, nil
	}
	return AttachmentLocal, nil
}

// ReadAttachment returns the bytes of a file held on the device, or
// ErrAttachmentNotLocal.
func (r *Replica) ReadAttachment(ctx context.Context, team, sha string) ([]byte, error) {
	lb, err := r.loadBlob(team, sha)
	if err != nil {
		return nil, err
	}
	if lb == nil {
		return nil, ErrAttachmentNotLocal
	}
	var buf bytes.Buffer
	_, err = io.Copy(&buf, &chunkReader{r: r, team: team, sum: sha, off: 0, end: lb.Size})
	return buf.Bytes(), err
}

// chunkReader reads [off, end) of a stored file, one chunk per view.
type chunkReader struct {
	r         *Replica
	team, sum string
	off, end  int64
	cur       []byte
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.cur) == 0 {
		if c.off >= c.end {
			return 0, io.EOF
		}
		i := uint32(c.off / ChunkSize)
		err := c.r.view(func(txn *badger.Txn) error {
			v, err := get(txn, blobChunkKey(c.team, c.sum, i))
			if err != nil {
				return err
			}
			if v == nil {
				return fmt.Errorf("client: attachment %s: chunk %d missing", c.sum, i)
			}
			c.cur = v[c.off-int64(i)*ChunkSize:]
			return nil
		})
		if err != nil {
			return 0, err
		}
		if rest := c.end - c.off; int64(len(c.cur)) > rest {
			c.cur = c.cur[:rest]
		}
	}
	n := copy(p, c.cur)
	c.cur = c.cur[n:]
	c.off += int64(n)
	return n, nil
}

// UploadAttachments uploads every file attached on this device and not yet
// on the server, resuming each from the byte the server last acknowledged
// (it asks with HEAD after a cut, so only bytes in flight are re-sent).
// Status().UploadsPending and UploadBytesPending count what is left and
// UploadBytesSent what has been sent. It returns how many files completed;
// an error leaves the rest queued for the next call.
func (r *Replica) UploadAttachments(ctx context.Context) (int, error) {
	if r.serverURL() == "" {
		return 0, ErrNoServer
	}
	bs, err := r.blobs()
	if err != nil {
		return 0, err
	}
	done := 0
	for _, lb := range bs {
		if lb.Uploaded || len(lb.Refs) == 0 {
			continue
		}
		err := r.uploadOne(ctx, lb)
		if errors.Is(err, errBlobDropped) {
			continue
		}
		if err != nil {
			r.refreshUploadStatus()
			return done, fmt.Errorf("client: upload attachment %s: %w", lb.SHA256, err)
		}
		done++
	}
	r.refreshUploadStatus()
	return done, nil
}

func (r *Replica) uploadOne(ctx context.Context, lb localBlob) error {
	path := "/v1/teams/" + lb.Team + "/blobs/" + lb.SHA256
	stalls := 0
	known := int64(-1) // the server's offset, when the last reply said it
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		off := known
		if off < 0 {
			var complete bool
			var err error
			off, complete, err = r.headBlob(ctx, path)
			if wait, ok := r.uploadWait(err); ok {
				if err := sleep(ctx, wait); err != nil {
					return err
				}
				continue
			}
			if err != nil {
				retry := errors.Is(err, ErrUnavailable) || problemCode(err) == api.CodeUploadBusy
				if stalls++; stalls > maxUploadStalls || !retry {
					return err
				}
				continue
			}
			if complete {
				off = lb.Size // only the ref to record
			} else {
				r.ackBlob(lb, off, false) // progress for Status, learnt after a cut
			}
		}
		end := min(off+r.upLink.next(), lb.Size)
		t0 := time.Now()
		st, err := r.patchBlob(ctx, path, lb, off, &chunkReader{r: r, team: lb.Team, sum: lb.SHA256, off: off, end: end})
		known = -1
		if err == nil {
			if st.Offset > off {
				stalls = 0
				r.upLink.observe(st.Offset-off, time.Since(t0), r.opts.AttachmentRequestTime)
			}
			r.ackBlob(lb, st.Offset, st.Complete)
			if st.Complete {
				return nil
			}
			known = st.Offset
			continue
		}
		if wait, ok := r.uploadWait(err); ok {
			// Rate limited: uploads count against the device's request
			// rate like any request. Wait what the server asks (it refused
			// before reading the body, so the offset stands); no stall.
			if err := sleep(ctx, wait); err != nil {
				return err
			}
			known = off
			continue
		}
		switch code := problemCode(err); {
		case code == api.CodeUploadOffset:
		case code == api.CodeBlobRecordErased:
			// The record was erased on the server: this file is not
			// stored for it, and is dropped here unless another record
			// still holds it.
			next, err := r.dropBlobRef(lb, lb.Refs[0])
			if err != nil || next == nil {
				return errors.Join(errBlobDropped, err)
			}
			lb, known = *next, -1
		case code == api.CodeUploadBusy || errors.Is(err, ErrUnavailable):
			if code != api.CodeUploadBusy {
				r.upLink.cut()
			}
			if stalls++; stalls > maxUploadStalls {
				return err
			}
			if code == api.CodeUploadBusy {
				if err := sleep(ctx, 200*time.Millisecond); err != nil {
					return err
				}
			}
		default:
			return err
		}
	}
}

// errBlobDropped: the file was dropped from the upload queue because
// every record it was attached to was erased on the server.
var errBlobDropped = errors.New("client: attachment dropped: its records were erased")

// dropBlobRef removes ref from the file's records, deleting the file when
// none is left; it returns the file's state after, or nil when deleted.
func (r *Replica) dropBlobRef(lb localBlob, ref Ref) (*localBlob, error) {
	var left *localBlob
	err := r.updateBlob(lb.Team, lb.SHA256, func(m *localBlob) bool {
		if m.SHA256 == "" {
			return false
		}
		m.Refs = slices.DeleteFunc(m.Refs, func(x Ref) bool { return x == ref })
		if len(m.Refs) == 0 {
			return false
		}
		cp := *m
		left = &cp
		return true
	})
	if err != nil {
		return nil, err
	}
	if left == nil {
		r.log.Info("attachment dropped: its record was erased on the server", "sha256", lb.SHA256)
		return nil, r.deleteChunks(lb.Team, lb.SHA256, lb.Size)
	}
	return left, nil
}

// uploadWait is how long to wait before retrying a rate-limited blob
// request: what the server asked (at least 100 ms, at most MaxRetryWait),
// without the jitter sync adds, so the retry finds the token it was told.
func (r *Replica) uploadWait(err error) (time.Duration, bool) {
	var p *api.Problem
	if !errors.As(err, &p) || p.Code != api.CodeRateLimited {
		return 0, false
	}
	return min(max(p.RetryAfter(), 100*time.Millisecond), r.opts.MaxRetryWait), true
}

func (r *Replica) ackBlob(lb localBlob, off int64, complete bool) {
	err := r.updateBlob(lb.Team, lb.SHA256, func(m *localBlob) bool {
		if m.SHA256 == "" {
			return false // purged meanwhile
		}
		m.Acked, m.Uploaded = off, complete
		return true
	})
	if err != nil {
		r.log.Warn("attachment: store acknowledged offset", "err", err)
	}
	r.refreshUploadStatus()
}

// blobRequest sends one blob request with the stored access token,
// refreshing it once on expiry. body is re-made for the retry.
func (r *Replica) blobRequest(ctx context.Context, method, path string, hdr http.Header, body func() io.Reader, length int64) (*http.Response, error) {
	for attempt := 0; ; attempt++ {
		tok, err := r.accessToken()
		if err != nil {
			return nil, err
		}
		var rd io.Reader
		if body != nil {
			rd = body()
		}
		req, err := http.NewRequestWithContext(ctx, method, r.serverURL()+path, rd)
		if err != nil {
			return nil, err
		}
		for k, v := range hdr {
			req.Header[k] = v
		}
		if body != nil {
			req.ContentLength = length
			if length == 0 {
				req.Body = http.NoBody
			}
		}
		req.Header.Set("Authorization", "Bearer "+tok)
		res, err := r.http.Do(req)
		if err != nil {
			return nil, unavailable(ctx, err)
		}
		if res.StatusCode < 300 || (res.StatusCode == http.StatusPartialContent) {
			return res, nil
		}
		b, _ := readBounded(res.Body, 64<<10)
		res.Body.Close()
		perr := problemError(res, b)
		code := problemCode(perr)
		if method == http.MethodHead && res.StatusCode == http.StatusNotFound {
			return res, nil
		}
		if (code == api.CodeTokenExpired || code == api.CodeUnauthorized) && attempt == 0 {
			if err := r.refresh(ctx, tok); err != nil {
				return nil, err
			}
			continue
		}
		if code == api.CodeDeviceRevoked || code == api.CodeRefreshReused {
			return nil, r.signOut(perr)
		}
		if code == api.CodeUploadOffset {
			return res, perr
		}
		return nil, perr
	}
}

func (r *Replica) headBlob(ctx context.Context, path string) (int64, bool, error) {
	res, err := r.blobRequest(ctx, http.MethodHead, path, nil, nil, 0)
	if err != nil {
		return 0, false, err
	}
	res.Body.Close()
	if res.StatusCode == http.StatusNotFound {
		return 0, false, nil
	}
	off, err := strconv.ParseInt(res.Header.Get(api.HeaderUploadOffset), 10, 64)
	if err != nil {
		return 0, false, fmt.Errorf("client: HEAD %s: bad %s", path, api.HeaderUploadOffset)
	}
	return off, res.Header.Get(api.HeaderBlobComplete) == "true", nil
}

// countingReader adds the bytes read (handed to the network) to the
// replica's UploadBytesSent.
type countingReader struct {
	r  io.Reader
	rp *Replica
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if n > 0 {
		c.rp.setStatus(func(s *Status) { s.UploadBytesSent += int64(n) })
	}
	return n, err
}

// patchBlob sends [body.off, body.end) of the file. It asks for 100
// Continue first, so a request the server refuses before reading (a wrong
// offset, the device's rate limit) costs headers, not a chunk: sending at
// once would save a round trip per request but, measured through a link
// cut every 1 MiB under the e2e rate limit, sent 1.15× the file instead
// of 1.002×.
func (r *Replica) patchBlob(ctx context.Context, path string, lb localBlob, off int64, body *chunkReader) (api.BlobStatus, error) {
	hdr := http.Header{}
	hdr.Set("Content-Type", api.BlobUploadContentType)
	hdr.Set(api.HeaderUploadOffset, strconv.FormatInt(off, 10))
	hdr.Set(api.HeaderUploadLength, strconv.FormatInt(lb.Size, 10))
	hdr.Set(api.HeaderBlobRecord, lb.Refs[0].Collection+"/"+lb.Refs[0].ID)
	if body.end > body.off {
		// Send the body only once the server has checked the offset
		// (it answers 100 Continue when it starts reading), so a
		// refused offset costs headers, not a chunk.
		hdr.Set("Expect", "100-continue")
	}
	start := body.off
	res, err := r.blobRequest(ctx, http.MethodPatch, path, hdr, func() io.Reader {
		body.off, body.cur = start, nil
		return &countingReader{r: body, rp: r}
	}, body.end-start)
	if err != nil {
		return api.BlobStatus{}, err
	}
	defer res.Body.Close()
	b, err := readBounded(res.Body, 64<<10)
	if err != nil {
		return api.BlobStatus{}, unavailable(ctx, err)
	}
	var st api.BlobStatus
	if err := json.Unmarshal(b, &st); err != nil {
		return api.BlobStatus{}, fmt.Errorf("client: PATCH %s: reply: %w", path, err)
	}
	return st, nil
}

// PurgeAttachments deletes the files no record of this replica refers to
// any more (their records were erased, purged or fell out of scope). Sync
// calls it after every successful sync. It returns how many files left.
func (r *Replica) PurgeAttachments(ctx context.Context) (int, error) {
	bs, err := r.blobs()
	if err != nil {
		return 0, err
	}
	n := 0
	for _, lb := range bs {
		var live []Ref
		err := r.view(func(txn *badger.Txn) error {
			for _, ref := range lb.Refs {
				v, err := get(txn, recordKey(ref))
				if err != nil {
					return err
				}
				if v != nil {
					live = append(live, ref)
				}
			}
			return nil
		})
		if err != nil {
			return n, err
		}
		if len(live) == len(lb.Refs) {
			continue
		}
		if len(live) > 0 {
			if err := r.updateBlob(lb.Team, lb.SHA256, func(m *localBlob) bool { m.Refs = live; return true }); err != nil {
				return n, err
			}
			continue
		}
		if err := r.deleteBlob(lb); err != nil {
			return n, err
		}
		n++
	}
	if err := r.purgePartials(); err != nil {
		return n, err
	}
	if n > 0 {
		r.refreshUploadStatus()
	}
	return n, nil
}

// purgePartials deletes the partial downloads whose record is gone from
// this replica (erased, purged, out of scope).
func (r *Replica) purgePartials() error {
	var gone []partialBlob
	err := r.view(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefBlobPart, PrefetchValues: true})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			var pb partialBlob
			if err := it.Item().Value(func(v []byte) error { return msgpack.Unmarshal(v, &pb) }); err != nil {
				return err
			}
			v, err := get(txn, recordKey(pb.Ref))
			if err != nil {
				return err
			}
			if v == nil {
				gone = append(gone, pb)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, pb := range gone {
		if err := r.dropPartial(pb); err != nil {
			return err
		}
	}
	return nil
}

func (r *Replica) deleteBlob(lb localBlob) error {
	if err := r.updateBlob(lb.Team, lb.SHA256, func(*localBlob) bool { return false }); err != nil {
		return err
	}
	return r.deleteChunks(lb.Team, lb.SHA256, lb.Size)
}

// deleteChunks deletes the chunk keys of a file of size bytes.
func (r *Replica) deleteChunks(team, sum string, size int64) error {
	chunks := uint32((size + ChunkSize - 1) / ChunkSize)
	for i := uint32(0); i < chunks; {
		err := r.db.Update(func(txn *badger.Txn) error {
			for j := 0; j < 64 && i < chunks; j++ {
				if err := txn.Delete(blobChunkKey(team, sum, i)); err != nil {
					return err
				}
				i++
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("client: purge attachment: %w", err)
		}
	}
	return nil
}

// requeueBlobs puts every file held on the device back in the upload
// queue, in the transaction that records a new server epoch: a server
// restored from a backup may lack files uploaded after it was taken. The
// queue asks the server first (HEAD), so a file it holds costs one request
// and is not sent again.
func requeueBlobs(txn *badger.Txn) error {
	it := txn.NewIterator(badger.IteratorOptions{Prefix: prefBlobMeta, PrefetchValues: true})
	defer it.Close()
	type kv struct{ k, v []byte }
	var out []kv
	for it.Rewind(); it.Valid(); it.Next() {
		var lb localBlob
		if err := it.Item().Value(func(v []byte) error { return msgpack.Unmarshal(v, &lb) }); err != nil {
			return fmt.Errorf("client: attachment metadata: %w", err)
		}
		if !lb.Uploaded {
			continue
		}
		lb.Uploaded, lb.Acked = false, 0
		v, err := msgpack.Marshal(&lb)
		if err != nil {
			return err
		}
		out = append(out, kv{it.Item().KeyCopy(nil), v})
	}
	for _, e := range out {
		if err := txn.Set(e.k, e.v); err != nil {
			return err
		}
	}
	return nil
}

// refreshUploadStatus recounts the uploads pending for Status.
func (r *Replica) refreshUploadStatus() {
	bs, err := r.blobs()
	if err != nil {
		return
	}
	var n int
	var left int64
	for _, lb := range bs {
		if !lb.Uploaded {
			n++
			left += lb.Size - lb.Acked
		}
	}
	r.setStatus(func(s *Status) { s.UploadsPending, s.UploadBytesPending = n, left })
}

// uploadInBackground runs the upload queue after a background sync. A
// failure is logged and retried after the next sync; it does not back off
// record sync (a quota refusal must not slow the records).
func (r *Replica) uploadInBackground(ctx context.Context) {
	if _, err := r.UploadAttachments(ctx); err != nil && ctx.Err() == nil {
		r.log.Warn("attachment upload", "err", err, "code", problemCode(err))
	}
}
