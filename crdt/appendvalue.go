package crdt

// AppendStringValue appends to dst the encoding EncodeValue(s) returns,
// so that a caller encoding many values can keep them in one buffer (a
// device's batch of creates, issue 17).
func AppendStringValue(dst []byte, s string) []byte { return appendStr(dst, s) }
