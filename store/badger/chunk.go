package badger

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	dgbadger "github.com/dgraph-io/badger/v4"

	"github.com/doorstep-health/doorstep/store"
)

// The on-disk form of big values (chunk form 1; see the package
// documentation, "Big values"). A value of ChunkSize bytes or more is
// never handed to Badger whole: Badger would put it in its value log,
// which an erasure's DropPrefix does not rewrite. It is stored as
//
//   - a head entry under the value's own key, with Badger's per-entry user
//     meta byte set to metaChunked and a small value: the form byte
//     (chunkForm1), then as uvarints the value's length, its chunk count
//     and the chunks' generation;
//   - the chunks, each under chunkPrefix ‖ esc(key) ‖ 0x00 0x01 ‖
//     generation (u64 big-endian) ‖ index (u32 big-endian), each under
//     ChunkSize bytes and so kept in Badger's tables (the LSM), where
//     DropPrefix and compaction remove them.
//
// esc doubles no byte but 0x00, written 0x00 0xFF, so esc(p) is a prefix
// of a chunk key of key k exactly when p is a prefix of k: DropPrefix(p)
// drops the chunks of every key it drops, and of no other.
//
// A big value's chunks are written in Badger transactions of their own,
// committed (fsynced) before the transaction that writes the head: a
// value Badger would have taken whole into its value log (where it counts
// a few bytes towards a transaction's size) then does not make the
// transaction too big. Readers never see chunks without a head: a head
// names its generation, a new one for every big write, so chunks written
// ahead replace nothing a reader uses. The transaction that writes the
// head deletes the chunks of the value it replaces; one that does not
// commit deletes the chunks it wrote ahead, and chunks a crash left
// without their head are deleted when the store opens (New).

// ChunkSize is the size of a value's chunks and the smallest value stored
// in chunks. It is half of Badger's default (and largest) value threshold
// of 1 MiB, below which Badger keeps values in its tables; Open lowers it
// to just under a smaller threshold if the options set one.
const ChunkSize = 512 << 10

const (
	// metaChunked is the user meta byte of a head entry. Doorstep wrote
	// no other user meta before chunk form 1, so a value without it is
	// a plain value (one written before chunking, perhaps in the value
	// log, still reads as it is).
	metaChunked byte = 0xD1
	// chunkForm1 is the first byte of a head entry's value.
	chunkForm1 byte = 1
)

// chunkPrefix starts every chunk key. No key of package store (nor of the
// auth store) starts with 0x00, and Set refuses keys that start with it,
// so no store key falls in the chunk range; iterators skip it.
var chunkPrefix = []byte("\x00chunk/")

// errReservedKey: a caller's key in the chunk range.
var errReservedKey = errors.New("store/badger: key in the reserved chunk range (starts with 0x00 \"chunk/\")")

// errCorruptChunks: a head entry whose chunks do not add up.
var errCorruptChunks = errors.New("store/badger: corrupt chunked value")

// appendEsc appends esc(k): k with each 0x00 byte written 0x00 0xFF.
func appendEsc(b, k []byte) []byte {
	for {
		i := bytes.IndexByte(k, 0)
		if i < 0 {
			return append(b, k...)
		}
		b = append(b, k[:i+1]...)
		b = append(b, 0xFF)
		k = k[i+1:]
	}
}

// chunkRef names a key's chunks: their generation and count (0: none).
type chunkRef struct {
	gen   uint64
	count int
}

// stagedValue is a big value whose chunks a write transaction wrote
// ahead of it, kept to read the transaction's own write back and to
// delete the chunks if it does not commit.
type stagedValue struct {
	key   []byte
	value []byte
	count int
}

// chunkKeyPrefix is the prefix of every chunk key of key k.
func chunkKeyPrefix(k []byte) []byte {
	b := make([]byte, 0, len(chunkPrefix)+len(k)+16)
	b = append(b, chunkPrefix...)
	b = appendEsc(b, k)
	return append(b, 0x00, 0x01)
}

// chunkKey is the key of chunk i of generation gen, from chunkKeyPrefix(k).
func chunkKey(prefix []byte, gen uint64, i int) []byte {
	b := make([]byte, 0, len(prefix)+12)
	b = append(b, prefix...)
	b = binary.BigEndian.AppendUint64(b, gen)
	return binary.BigEndian.AppendUint32(b, uint32(i))
}

// dropPrefixFor is the chunk-range prefix DropPrefix(p) also drops.
func dropPrefixFor(p []byte) []byte {
	return appendEsc(bytes.Clone(chunkPrefix), p)
}

// dropSentinel is the key DropPrefix sets under the chunk prefix cp (from
// dropPrefixFor) so that Badger drops that prefix: cp ‖ 0x00 0x00, which
// no chunk key starts with (after esc(key) a chunk key has 0x00 0x01, and
// esc writes 0x00 as 0x00 0xFF).
func dropSentinel(cp []byte) []byte { return append(bytes.Clone(cp), 0x00, 0x00) }

// keyOfChunk returns the store key a chunk key belongs to, its generation
// and its index.
func keyOfChunk(ck []byte) (key []byte, gen uint64, idx uint32, ok bool) {
	const tail = 2 + 8 + 4
	if !bytes.HasPrefix(ck, chunkPrefix) || len(ck) < len(chunkPrefix)+tail {
		return nil, 0, 0, false
	}
	e := ck[len(chunkPrefix) : len(ck)-tail]
	t := ck[len(ck)-tail:]
	if t[0] != 0x00 || t[1] != 0x01 {
		return nil, 0, 0, false
	}
	k := make([]byte, 0, len(e))
	for i := 0; i < len(e); i++ {
		k = append(k, e[i])
		if e[i] == 0 {
			if i+1 >= len(e) || e[i+1] != 0xFF {
				return nil, 0, 0, false
			}
			i++
		}
	}
	return k, binary.BigEndian.Uint64(t[2:10]), binary.BigEndian.Uint32(t[10:]), true
}

// chunkCount is the number of chunks of an n-byte value in chunks of size.
func chunkCount(n, size int) int { return (n + size - 1) / size }

// encodeHead is a head entry's value.
func encodeHead(n int, ref chunkRef) []byte {
	b := []byte{chunkForm1}
	b = binary.AppendUvarint(b, uint64(n))
	b = binary.AppendUvarint(b, uint64(ref.count))
	return binary.AppendUvarint(b, ref.gen)
}

// decodeHead reads a head entry's value.
func decodeHead(b []byte) (n int, ref chunkRef, err error) {
	if len(b) < 1 || b[0] != chunkForm1 {
		return 0, ref, fmt.Errorf("%w: unknown chunk form", errCorruptChunks)
	}
	b = b[1:]
	var vs [3]uint64
	for i := range vs {
		v, k := binary.Uvarint(b)
		if k <= 0 {
			return 0, ref, fmt.Errorf("%w: bad head", errCorruptChunks)
		}
		vs[i], b = v, b[k:]
	}
	if len(b) != 0 || vs[0] > 1<<40 || vs[1] > 1<<31 {
		return 0, ref, fmt.Errorf("%w: bad head", errCorruptChunks)
	}
	return int(vs[0]), chunkRef{gen: vs[2], count: int(vs[1])}, nil
}

// loadChunks fills s.chunked and s.gen from the chunk range and deletes
// chunks without a head naming them (a crash between the chunks'
// transactions and the head's).
func (s *Store) loadChunks() error {
	type group struct {
		key []byte
		ref chunkRef
	}
	var groups []group
	err := s.db.View(func(txn *dgbadger.Txn) error {
		it := txn.NewIterator(dgbadger.IteratorOptions{Prefix: chunkPrefix})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			k, gen, _, ok := keyOfChunk(it.Item().Key())
			if !ok {
				continue // a DropPrefix sentinel left by a crash
			}
			s.gen = max(s.gen, gen)
			if n := len(groups); n > 0 && groups[n-1].ref.gen == gen && bytes.Equal(groups[n-1].key, k) {
				groups[n-1].ref.count++
				continue
			}
			groups = append(groups, group{key: k, ref: chunkRef{gen: gen, count: 1}})
		}
		return nil
	})
	if err != nil || len(groups) == 0 {
		return err
	}
	var orphans []group
	err = s.db.View(func(txn *dgbadger.Txn) error {
		for _, g := range groups {
			ref, err := headRef(txn, g.key)
			if err != nil {
				return err
			}
			if ref.gen == g.ref.gen && ref.count > 0 {
				s.chunked[string(g.key)] = ref
			} else {
				orphans = append(orphans, g)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, g := range orphans {
		if err := s.deleteChunks(g.key, g.ref); err != nil {
			return err
		}
	}
	return nil
}

// headRef is the chunks key's head entry names in txn (none if key is
// absent or holds a plain value).
func headRef(txn *dgbadger.Txn, key []byte) (chunkRef, error) {
	item, err := txn.Get(key)
	if errors.Is(err, dgbadger.ErrKeyNotFound) {
		return chunkRef{}, nil
	}
	if err != nil || item.UserMeta() != metaChunked {
		return chunkRef{}, err
	}
	var ref chunkRef
	err = item.Value(func(v []byte) error {
		var err error
		_, ref, err = decodeHead(v)
		return err
	})
	return ref, err
}

// deleteChunks deletes key's chunks of ref in transactions of their own.
func (s *Store) deleteChunks(key []byte, ref chunkRef) error {
	p := chunkKeyPrefix(key)
	wb := s.db.NewWriteBatch()
	defer wb.Cancel()
	for i := range ref.count {
		if err := wb.Delete(chunkKey(p, ref.gen, i)); err != nil {
			return err
		}
	}
	return wb.Flush()
}

// value returns a copy of item's value, put together from its chunks if
// it is a head entry.
func (t *tx) value(item *dgbadger.Item) ([]byte, error) {
	v, err := item.ValueCopy(nil)
	if err != nil || item.UserMeta() != metaChunked {
		return v, mapErr(err)
	}
	n, ref, err := decodeHead(v)
	if err != nil {
		return nil, fmt.Errorf("%w (key %q)", err, item.Key())
	}
	if sv, ok := t.staged[ref.gen]; ok {
		return bytes.Clone(sv.value), nil // this transaction's own write
	}
	out := make([]byte, 0, n)
	p := chunkKeyPrefix(item.Key())
	for i := range ref.count {
		ci, err := t.txn.Get(chunkKey(p, ref.gen, i))
		if err != nil {
			return nil, fmt.Errorf("%w: key %q chunk %d: %v", errCorruptChunks, item.Key(), i, err)
		}
		if err := ci.Value(func(c []byte) error { out = append(out, c...); return nil }); err != nil {
			return nil, mapErr(err)
		}
	}
	if len(out) != n {
		return nil, fmt.Errorf("%w: key %q has %d bytes in chunks, head says %d", errCorruptChunks, item.Key(), len(out), n)
	}
	return out, nil
}

// chunks is key's chunk reference in this transaction.
func (t *tx) chunks(key []byte) chunkRef {
	if r, ok := t.over[string(key)]; ok {
		return r
	}
	return t.kv.chunked[string(key)]
}

// setChunked records key's chunk reference in this transaction.
func (t *tx) setChunked(key []byte, r chunkRef) {
	if t.over == nil {
		t.over = map[string]chunkRef{}
	}
	t.over[string(key)] = r
}

// applyChunked records a committed transaction's chunk references in the
// store (under the writer token).
func (t *tx) applyChunked() {
	for k, r := range t.over {
		if r.count == 0 {
			delete(t.kv.chunked, k)
		} else {
			t.kv.chunked[k] = r
		}
	}
	t.over, t.staged = nil, nil
}

// unstage deletes the chunks this transaction wrote ahead of it, which
// no head names since it did not commit. On an error the chunks stay
// until the store next opens (New deletes them).
func (t *tx) unstage() {
	for gen, sv := range t.staged {
		_ = t.kv.deleteChunks(sv.key, chunkRef{gen: gen, count: sv.count})
	}
	t.over, t.staged = nil, nil
}

// dropChunks deletes, in this transaction, the chunks key's current value
// has, if any.
func (t *tx) dropChunks(key []byte) error {
	old := t.chunks(key)
	if old.count == 0 {
		return nil
	}
	p := chunkKeyPrefix(key)
	for i := range old.count {
		if err := t.txn.Delete(chunkKey(p, old.gen, i)); err != nil {
			return mapErr(err)
		}
	}
	t.setChunked(key, chunkRef{})
	return nil
}

// put writes value under key (with ttl, 0: none), a big value in chunks
// written ahead of this transaction, and deletes the chunks of the value
// it replaces.
func (t *tx) put(key, value []byte, ttl time.Duration) error {
	if bytes.HasPrefix(key, chunkPrefix) {
		return errReservedKey
	}
	if len(value) < t.kv.chunk {
		if len(t.kv.chunked) > 0 || len(t.over) > 0 {
			if err := t.dropChunks(key); err != nil {
				return err
			}
		}
		if ttl > 0 {
			return mapErr(t.txn.SetEntry(dgbadger.NewEntry(key, value).WithTTL(ttl)))
		}
		return mapErr(t.txn.Set(key, value))
	}
	if !t.write {
		return store.ErrReadOnly
	}
	t.kv.gen++
	ref := chunkRef{gen: t.kv.gen, count: chunkCount(len(value), t.kv.chunk)}
	if err := t.kv.writeChunks(key, value, ref, ttl); err != nil {
		// Some chunks may be written: delete them with the others.
		t.stage(key, value, ref)
		return fmt.Errorf("store/badger: write chunks of %q: %w", key, mapErr(err))
	}
	t.stage(key, value, ref)
	if err := t.dropChunks(key); err != nil {
		return err
	}
	e := dgbadger.NewEntry(key, encodeHead(len(value), ref)).WithMeta(metaChunked)
	if ttl > 0 {
		e = e.WithTTL(ttl)
	}
	if err := t.txn.SetEntry(e); err != nil {
		return mapErr(err)
	}
	t.setChunked(key, ref)
	return nil
}

// stage records a big value whose chunks were written ahead.
func (t *tx) stage(key, value []byte, ref chunkRef) {
	if t.staged == nil {
		t.staged = map[uint64]stagedValue{}
	}
	t.staged[ref.gen] = stagedValue{key: bytes.Clone(key), value: value, count: ref.count}
}

// writeChunks writes value's chunks under ref in Badger transactions of
// their own, each at most half of Badger's batch limit, and commits them
// (fsynced: the store syncs writes).
func (s *Store) writeChunks(key, value []byte, ref chunkRef, ttl time.Duration) error {
	p := chunkKeyPrefix(key)
	per := max(1, int(s.db.MaxBatchSize()/2)/s.chunk)
	for first := 0; first < ref.count; first += per {
		err := s.db.Update(func(txn *dgbadger.Txn) error {
			for i := first; i < min(first+per, ref.count); i++ {
				e := dgbadger.NewEntry(chunkKey(p, ref.gen, i), value[i*s.chunk:min((i+1)*s.chunk, len(value))])
				if ttl > 0 {
					e = e.WithTTL(ttl)
				}
				if err := txn.SetEntry(e); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// RawEntry is one Badger entry of a value in the store's on-disk form,
// for tools that write a store's directory with Badger directly (restore's
// StreamWriter load).
type RawEntry struct {
	Key, Value []byte
	UserMeta   byte
}

// EncodeValue returns the Badger entries that hold value under key: the
// entry itself for a value under ChunkSize, otherwise the head entry and
// its chunks (chunk generation gen, which must be unique to this key in
// the directory; chunks sort before every store key, in the order of
// their keys). userMeta is the value's own user meta byte: a chunked value
// has none (a backup of this store reads 0).
func EncodeValue(key, value []byte, userMeta byte, gen uint64) (head RawEntry, chunks []RawEntry) {
	if len(value) < ChunkSize || userMeta != 0 {
		return RawEntry{Key: key, Value: value, UserMeta: userMeta}, nil
	}
	ref := chunkRef{gen: gen, count: chunkCount(len(value), ChunkSize)}
	p := chunkKeyPrefix(key)
	chunks = make([]RawEntry, ref.count)
	for i := range chunks {
		chunks[i] = RawEntry{Key: chunkKey(p, gen, i), Value: value[i*ChunkSize : min((i+1)*ChunkSize, len(value))]}
	}
	return RawEntry{Key: key, Value: encodeHead(len(value), ref), UserMeta: metaChunked}, chunks
}
