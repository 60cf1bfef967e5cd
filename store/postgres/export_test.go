package postgres

// SetUnbuffered makes kv send each write at once instead of buffering it
// (the benchmark's baseline).
func SetUnbuffered(kv *KV, on bool) { kv.unbuffered = on }
