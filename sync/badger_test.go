package sync

import (
	badger "github.com/dgraph-io/badger/v4"
	"github.com/vmihailenco/msgpack/v5"
)

type badgerTxn = badger.Txn

func badgerIteratorOptions(prefix []byte) badger.IteratorOptions {
	return badger.IteratorOptions{Prefix: prefix, PrefetchValues: true, PrefetchSize: 100}
}

func msgpackUnmarshal(b []byte, v any) error { return msgpack.Unmarshal(b, v) }
