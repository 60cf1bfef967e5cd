package client

// Attachment downloads, resumable across cuts and app restarts. The bytes
// are written to the file's chunk keys (b/d/, as for a file attached
// here) as whole chunks arrive, and a partial-download entry says how many
// are held:
//
//	b/p/<team>\x00<sha256>  partialBlob (msgpack): size, type, the record, bytes held
//
// The file's metadata key (b/m/) is written only once every byte is held
// and the whole file hashes to its name, in the transaction that deletes
// the partial entry: a file is readable only when complete and verified.

import (
	"context"
	"crypto/sha256"
	"encoding"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"slices"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/doorstep-health/doorstep/schema"
)

var prefBlobPart = []byte("b/p/")

func blobPartKey(team, sum string) []byte {
	return append(slices.Clone(prefBlobPart), team+"\x00"+sum...)
}

// partialBlob is a download in progress.
type partialBlob struct {
	Team        string `msgpack:"t"`
	SHA256      string `msgpack:"h"`
	Size        int64  `msgpack:"n"`
	ContentType string `msgpack:"c"`
	Ref         Ref    `msgpack:"r"`
	// Held counts the bytes in chunk keys: whole chunks, or the file.
	Held int64 `msgpack:"a"`
	// Hash is the SHA-256 state after the Held bytes (MarshalBinary), so
	// the file is hashed as it arrives, across restarts, without reading
	// it back.
	Hash []byte `msgpack:"s"`
}

// FetchAttachment downloads the file an attachment value names, for the
// record ref, unless it is here already. It refuses a file larger than the
// device's cap (DefaultMaxAttachment) before downloading, and keeps the
// file only if its size and SHA-256 match the metadata. The download is
// made of ranged requests sized to the link (linkrate.go); what arrived
// is kept across cuts and app restarts, so a later call resumes it.
func (r *Replica) FetchAttachment(ctx context.Context, ref Ref, a schema.Attachment) error {
	if err := a.Check(); err != nil {
		return &ValidationError{Err: err}
	}
	if lb, err := r.loadBlob(ref.Team, a.SHA256); err != nil || lb != nil {
		if lb != nil && !slices.Contains(lb.Refs, ref) {
			return r.updateBlob(ref.Team, a.SHA256, func(m *localBlob) bool { m.Refs = append(m.Refs, ref); return true })
		}
		return err
	}
	if a.Size > r.maxAttachment() {
		return &LimitError{What: "attachment bytes", Limit: int(r.maxAttachment()), Size: int(a.Size)}
	}
	r.fetchMu.Lock()
	defer r.fetchMu.Unlock()
	pb, err := r.loadPartial(ref.Team, a.SHA256)
	if err != nil {
		return fmt.Errorf("client: fetch attachment: %w", err)
	}
	if pb == nil || pb.Size != a.Size {
		if pb != nil {
			if err := r.dropPartial(*pb); err != nil {
				return err
			}
		}
		pb = &partialBlob{Team: ref.Team, SHA256: a.SHA256, Size: a.Size, ContentType: a.ContentType, Ref: ref}
	}
	h, err := r.resumeHash(pb)
	if err != nil {
		return fmt.Errorf("client: fetch attachment: %w", err)
	}
	if err := r.download(ctx, "/v1/teams/"+ref.Team+"/blobs/"+a.SHA256, pb, h); err != nil {
		if errors.Is(err, ErrAttachmentHash) {
			r.dropPartial(*pb)
		}
		return fmt.Errorf("client: fetch attachment: %w", err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); pb.Held != a.Size || got != a.SHA256 {
		r.dropPartial(*pb)
		return fmt.Errorf("%w: got %d bytes hashing to %s", ErrAttachmentHash, pb.Held, got)
	}
	// Complete and verified: the metadata makes it readable, and the
	// partial entry goes, in one transaction.
	r.blobMu.Lock()
	defer r.blobMu.Unlock()
	lb := localBlob{Team: ref.Team, SHA256: a.SHA256, Size: a.Size, ContentType: a.ContentType, Refs: []Ref{ref}, Uploaded: true, Acked: a.Size}
	out, err := msgpack.Marshal(&lb)
	if err != nil {
		return err
	}
	if err := r.db.Update(func(txn *badger.Txn) error {
		if err := txn.Set(blobMetaKey(ref.Team, a.SHA256), out); err != nil {
			return err
		}
		return txn.Delete(blobPartKey(ref.Team, a.SHA256))
	}); err != nil {
		return fmt.Errorf("client: store attachment: %w", err)
	}
	return nil
}

// resumeHash returns the SHA-256 state after pb's Held bytes: the one
// stored with them, or, if that is missing or unreadable, the stored bytes
// hashed again.
func (r *Replica) resumeHash(pb *partialBlob) (hash.Hash, error) {
	h := sha256.New()
	if pb.Held == 0 {
		return h, nil
	}
	if u, ok := h.(encoding.BinaryUnmarshaler); ok && len(pb.Hash) > 0 && u.UnmarshalBinary(pb.Hash) == nil {
		return h, nil
	}
	h.Reset()
	if _, err := io.Copy(h, &chunkReader{r: r, team: pb.Team, sum: pb.SHA256, off: 0, end: pb.Held}); err != nil {
		return nil, err
	}
	return h, nil
}

func (r *Replica) loadPartial(team, sum string) (*partialBlob, error) {
	return loadMsgpack[partialBlob](r, blobPartKey(team, sum))
}

// dropPartial deletes a partial download and the chunks it holds, unless
// the file is complete here meanwhile (attached on this device): its
// chunks are then the file's.
func (r *Replica) dropPartial(pb partialBlob) error {
	if err := r.db.Update(func(txn *badger.Txn) error { return txn.Delete(blobPartKey(pb.Team, pb.SHA256)) }); err != nil {
		return fmt.Errorf("client: drop partial download: %w", err)
	}
	if lb, err := r.loadBlob(pb.Team, pb.SHA256); err != nil || lb != nil {
		return err
	}
	return r.deleteChunks(pb.Team, pb.SHA256, pb.Size)
}

// download GETs the rest of pb's file in ranges sized to the link, so no
// response outlasts a timeout on a slow link, storing each whole chunk as
// it completes (with pb.Held, in one transaction). After a cut it asks for
// the rest from the last byte received; it gives up after maxUploadStalls
// requests in a row that brought nothing, keeping what is stored.
func (r *Replica) download(ctx context.Context, path string, pb *partialBlob, h hash.Hash) error {
	sink := &chunkSink{r: r, pb: pb, h: h}
	stalls := 0
	for pos := pb.Held; pos < pb.Size; pos = pb.Held + int64(len(sink.buf)) {
		if err := ctx.Err(); err != nil {
			return err
		}
		end := min(pos+r.downLink.next(), pb.Size) // exclusive
		hdr := http.Header{}
		hdr.Set("Range", fmt.Sprintf("bytes=%d-%d", pos, end-1))
		t0 := time.Now()
		res, err := r.blobRequest(ctx, http.MethodGet, path, hdr, nil, 0)
		if wait, ok := r.uploadWait(err); ok {
			if err := sleep(ctx, wait); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			if errors.Is(err, ErrUnavailable) {
				r.downLink.cut()
				if stalls++; stalls <= maxUploadStalls {
					continue
				}
			}
			return err
		}
		want := end - pos
		switch {
		case res.StatusCode == http.StatusPartialContent:
			var start int64 = -1
			fmt.Sscanf(res.Header.Get("Content-Range"), "bytes %d-", &start)
			if start != pos {
				res.Body.Close()
				return fmt.Errorf("%w: asked for bytes from %d, the server sent %q", ErrAttachmentHash, pos, res.Header.Get("Content-Range"))
			}
		case res.StatusCode == http.StatusOK && pos == 0:
			want = pb.Size // the whole file (a server or proxy ignoring Range)
		default:
			res.Body.Close()
			return fmt.Errorf("client: GET %s: status %d", path, res.StatusCode)
		}
		if res.ContentLength > want {
			res.Body.Close()
			return fmt.Errorf("%w: the server offers %d bytes, the record says %d", ErrAttachmentHash, pos+res.ContentLength, pb.Size)
		}
		n, err := io.Copy(sink, io.LimitReader(res.Body, want))
		res.Body.Close()
		if errors.Is(err, ErrAttachmentHash) || errors.Is(err, errStore) {
			return err
		}
		if cerr := sink.commit(); cerr != nil { // what arrived survives a restart
			return cerr
		}
		if n > 0 {
			stalls = 0
		}
		if err != nil {
			// Keep what arrived: the next range starts after it.
			r.downLink.cut()
			if stalls++; stalls > maxUploadStalls {
				return unavailable(ctx, err)
			}
			continue
		}
		if n == 0 {
			return fmt.Errorf("%w: the server sent no bytes from %d of %d", ErrAttachmentHash, pos, pb.Size)
		}
		r.downLink.observe(n, time.Since(t0), r.opts.AttachmentRequestTime)
	}
	return sink.flush()
}

// errStore marks a failure to store downloaded bytes (not a network cut).
var errStore = errors.New("client: store downloaded bytes")

// chunkSink collects downloaded bytes and stores the whole chunks among
// them (and the file's last, shorter one) with the partial entry's new
// Held, in one transaction per commit: after each response, cut or not,
// and whenever sinkBatch chunks are waiting.
type chunkSink struct {
	r   *Replica
	pb  *partialBlob
	h   hash.Hash // SHA-256 of the pb.Held bytes stored
	buf []byte    // bytes after pb.Held
}

const sinkBatch = 16 // 4 MiB

func (s *chunkSink) Write(p []byte) (int, error) {
	if s.pb.Held+int64(len(s.buf)+len(p)) > s.pb.Size {
		return 0, fmt.Errorf("%w: more bytes than the record says", ErrAttachmentHash)
	}
	s.buf = append(s.buf, p...)
	if len(s.buf) >= sinkBatch*ChunkSize {
		if err := s.commit(); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

// flush stores what is held once the file is all here.
func (s *chunkSink) flush() error { return s.commit() }

// commit stores the whole chunks held (all of it when it ends the file).
func (s *chunkSink) commit() error {
	n := len(s.buf) / ChunkSize * ChunkSize
	if s.pb.Held+int64(len(s.buf)) == s.pb.Size {
		n = len(s.buf)
	}
	if n == 0 {
		return nil
	}
	next := *s.pb
	next.Held += int64(n)
	s.h.Write(s.buf[:n])
	if m, ok := s.h.(encoding.BinaryMarshaler); ok {
		next.Hash, _ = m.MarshalBinary()
	}
	out, err := msgpack.Marshal(&next)
	if err != nil {
		return err
	}
	if err := s.r.db.Update(func(txn *badger.Txn) error {
		for off := 0; off < n; off += ChunkSize {
			i := uint32((s.pb.Held + int64(off)) / ChunkSize)
			if err := txn.Set(blobChunkKey(s.pb.Team, s.pb.SHA256, i), slices.Clone(s.buf[off:min(off+ChunkSize, n)])); err != nil {
				return err
			}
		}
		return txn.Set(blobPartKey(s.pb.Team, s.pb.SHA256), out)
	}); err != nil {
		return fmt.Errorf("%w: %w", errStore, err)
	}
	*s.pb = next
	s.buf = append(s.buf[:0], s.buf[n:]...)
	return nil
}
