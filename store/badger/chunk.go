package badger

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
)

// The on-disk form of big values (chunk form 1; see the package
// documentation, "Big values"). A value of ChunkSize bytes or more is
// never handed to Badger whole: Badger would put it in its value log,
// which an erasure's DropPrefix does not rewrite. It is stored as
//
//   - a head entry under the value's own key, with Badger's per-entry user
//     meta byte set to metaChunked and a small value: the form byte
//     (chunkForm1), the value's length and its chunk count, both uvarints;
//   - the chunks, each under chunkPrefix ‖ esc(key) ‖ 0x00 0x01 ‖ index
//     (u32 big-endian), each under ChunkSize bytes and so kept in Badger's
//     tables (the LSM), where DropPrefix and compaction remove them.
//
// esc doubles no byte but 0x00, written 0x00 0xFF, so esc(p) is a prefix
// of a chunk key of key k exactly when p is a prefix of k: DropPrefix(p)
// drops the chunks of every key it drops, and of no other.

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

// chunkKeyPrefix is the prefix of every chunk key of key k.
func chunkKeyPrefix(k []byte) []byte {
	b := make([]byte, 0, len(chunkPrefix)+len(k)+8)
	b = append(b, chunkPrefix...)
	b = appendEsc(b, k)
	return append(b, 0x00, 0x01)
}

// chunkKey is the key of chunk i of key k, from chunkKeyPrefix(k).
func chunkKey(prefix []byte, i int) []byte {
	return binary.BigEndian.AppendUint32(bytes.Clone(prefix), uint32(i))
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

// keyOfChunk returns the store key a chunk key belongs to and the chunk's
// index.
func keyOfChunk(ck []byte) ([]byte, uint32, bool) {
	if !bytes.HasPrefix(ck, chunkPrefix) || len(ck) < len(chunkPrefix)+6 {
		return nil, 0, false
	}
	e := ck[len(chunkPrefix) : len(ck)-6]
	if !bytes.Equal(ck[len(ck)-6:len(ck)-4], []byte{0x00, 0x01}) {
		return nil, 0, false
	}
	k := make([]byte, 0, len(e))
	for i := 0; i < len(e); i++ {
		k = append(k, e[i])
		if e[i] == 0 {
			if i+1 >= len(e) || e[i+1] != 0xFF {
				return nil, 0, false
			}
			i++
		}
	}
	return k, binary.BigEndian.Uint32(ck[len(ck)-4:]), true
}

// chunkCount is the number of chunks of an n-byte value in chunks of size.
func chunkCount(n, size int) int { return (n + size - 1) / size }

// encodeHead is a head entry's value.
func encodeHead(n, count int) []byte {
	b := []byte{chunkForm1}
	b = binary.AppendUvarint(b, uint64(n))
	return binary.AppendUvarint(b, uint64(count))
}

// decodeHead reads a head entry's value.
func decodeHead(b []byte) (n, count int, err error) {
	if len(b) < 1 || b[0] != chunkForm1 {
		return 0, 0, fmt.Errorf("%w: unknown chunk form", errCorruptChunks)
	}
	b = b[1:]
	v, k := binary.Uvarint(b)
	if k <= 0 || v > 1<<40 {
		return 0, 0, fmt.Errorf("%w: bad length", errCorruptChunks)
	}
	c, k2 := binary.Uvarint(b[k:])
	if k2 <= 0 || c > 1<<31 || k+k2 != len(b) {
		return 0, 0, fmt.Errorf("%w: bad chunk count", errCorruptChunks)
	}
	return int(v), int(c), nil
}
