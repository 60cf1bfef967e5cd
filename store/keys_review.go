package store

import (
	"bytes"
	"fmt"
)

// RecordCollectionPrefix is r/s(team)s(coll): every record of one
// collection of a team, for review queries that read a collection whole
// (the outcomes export).
func RecordCollectionPrefix(team, coll string) []byte {
	return appendStr(RecordPrefix(team), coll)
}

// ChangedCursorKey rebuilds a changed-since key from a team and the key's
// suffix after ChangedPrefix(team) (the opaque cursor of a changed-since
// page), and checks that it parses.
func ChangedCursorKey(team string, suffix []byte) ([]byte, error) {
	k := append(ChangedPrefix(team), suffix...)
	if _, _, err := ParseChangedKey(k); err != nil {
		return nil, err
	}
	return k, nil
}

var prefixTerm = []byte("s/")

// TermPrefix is s/s(team)prefix: the term index entries of a team whose
// term starts with prefix (a name-search prefix, or a whole term followed
// by TermEnd).
func TermPrefix(team, prefix string) []byte {
	b := appendStr(cat(prefixTerm, len(team)+len(prefix)+2), team)
	return append(b, prefix...)
}

// TermEnd ends a term inside a term key; terms never contain it.
const TermEnd = 0

// TermKey is s/s(team)term 0x00 s(coll)s(id): the record carries the
// index term (a search token or a link to a person, see sync's terms).
func TermKey(team, term, coll, id string) []byte {
	b := append(TermPrefix(team, term), TermEnd)
	b = appendStr(b, coll)
	return appendStr(b, id)
}

// ParseTermKey returns the term and record of a key written by TermKey.
func ParseTermKey(k []byte) (string, RecordRef, error) {
	var ref RecordRef
	if len(k) < len(prefixTerm) || string(k[:len(prefixTerm)]) != string(prefixTerm) {
		return "", ref, fmt.Errorf("%w: want prefix %q", ErrBadKey, prefixTerm)
	}
	team, rest, err := readStr(k[len(prefixTerm):])
	if err != nil {
		return "", ref, err
	}
	end := bytes.IndexByte(rest, TermEnd)
	if end < 0 {
		return "", ref, fmt.Errorf("%w: term key without end", ErrBadKey)
	}
	term := string(rest[:end])
	ref.Team = team
	if ref.Collection, rest, err = readStr(rest[end+1:]); err != nil {
		return "", ref, err
	}
	if ref.ID, rest, err = readStr(rest); err != nil {
		return "", ref, err
	}
	if len(rest) != 0 {
		return "", ref, fmt.Errorf("%w: trailing bytes", ErrBadKey)
	}
	return term, ref, nil
}

// KeyTermIndex marks a store whose term index (s/ keys) covers every
// record: written once the index has been built for records stored before
// the index existed.
var KeyTermIndex = []byte("m/terms")

// AllRecordsPrefix is r/: every record of every team.
func AllRecordsPrefix() []byte { return cat(prefixRecord, 0) }
