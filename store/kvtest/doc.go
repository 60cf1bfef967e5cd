// Package kvtest is the conformance suite of the storage seam: Run checks
// that a backend behaves as store.KV's documentation says (get, set and
// delete; read-your-writes; rollback; read-only enforcement; snapshot
// isolation of reads against a concurrent commit; serialized writers;
// prefix iteration forward and reverse with Seek and Rewind, including
// prefixes ending in 0xFF and the nil prefix; KeysOnly; deleting while
// iterating; TTL expiry; DropPrefix; Begin, Commit and Discard; and, for a
// durable backend, committed data present after reopening).
//
// A backend's test calls it with an Opener:
//
//	func TestConformance(t *testing.T) {
//		kvtest.Run(t, func(t *testing.T) (store.KV, kvtest.Reopen) {
//			dir := t.TempDir()
//			open := func() (store.KV, error) { return badger.Open(dir) }
//			kv, err := open()
//			if err != nil {
//				t.Fatal(err)
//			}
//			return kv, open
//		})
//	}
//
// The suite closes every store it is given or reopens (so the Opener's own
// cleanup must not close it). Every subtest opens a fresh store and some
// run in parallel, so a backend must tolerate several open stores at once.
//
// kvtest imports only package store and the standard library; it knows no
// backend and no key layout beyond the interface.
package kvtest
