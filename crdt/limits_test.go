package crdt

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"runtime"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

// oneOfEachType has one well-formed value for every msgpack type code family.
var oneOfEachType = map[string][]byte{
	"positive fixint": {0x7f},
	"fixmap":          {0x81, 0xa1, 'k', 0x01},
	"empty fixmap":    {0x80},
	"fixarray":        {0x92, 0x01, 0x02},
	"empty fixarray":  {0x90},
	"fixstr":          {0xa3, 'a', 'b', 'c'},
	"empty fixstr":    {0xa0},
	"nil":             {0xc0},
	"false":           {0xc2},
	"true":            {0xc3},
	"bin8":            {0xc4, 0x02, 0xff, 0x00},
	"bin16":           {0xc5, 0x00, 0x01, 0xff},
	"bin32":           {0xc6, 0x00, 0x00, 0x00, 0x01, 0xff},
	"ext8":            {0xc7, 0x02, 0x05, 0xaa, 0xbb},
	"ext16":           {0xc8, 0x00, 0x01, 0x05, 0xaa},
	"ext32":           {0xc9, 0x00, 0x00, 0x00, 0x01, 0x05, 0xaa},
	"float32":         {0xca, 0, 0, 0, 0},
	"float64":         {0xcb, 0, 0, 0, 0, 0, 0, 0, 0},
	"uint8":           {0xcc, 0xff},
	"uint16":          {0xcd, 0xff, 0xff},
	"uint32":          {0xce, 0xff, 0xff, 0xff, 0xff},
	"uint64":          {0xcf, 0, 0, 0, 0, 0, 0, 0, 1},
	"int8":            {0xd0, 0x80},
	"int16":           {0xd1, 0x80, 0x00},
	"int32":           {0xd2, 0x80, 0, 0, 0},
	"int64":           {0xd3, 0x80, 0, 0, 0, 0, 0, 0, 0},
	"fixext1":         {0xd4, 0x01, 0xaa},
	"fixext2":         {0xd5, 0x01, 0xaa, 0xbb},
	"fixext4":         {0xd6, 0x01, 1, 2, 3, 4},
	"fixext8":         {0xd7, 0x01, 1, 2, 3, 4, 5, 6, 7, 8},
	"fixext16":        {0xd8, 0x01, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16},
	"str8":            {0xd9, 0x01, 'x'},
	"str16":           {0xda, 0x00, 0x01, 'x'},
	"str32":           {0xdb, 0x00, 0x00, 0x00, 0x01, 'x'},
	"array16":         {0xdc, 0x00, 0x02, 0xc0, 0xc3},
	"array32":         {0xdd, 0x00, 0x00, 0x00, 0x01, 0xc0},
	"map16":           {0xde, 0x00, 0x01, 0xa1, 'k', 0xc0},
	"map32":           {0xdf, 0x00, 0x00, 0x00, 0x01, 0x01, 0x02},
	"negative fixint": {0xe0},
	"minus one":       {0xff},
}

func TestCheckLimitsEveryType(t *testing.T) {
	for name, b := range oneOfEachType {
		t.Run(name, func(t *testing.T) {
			if err := CheckLimits(b, DefaultLimits); err != nil {
				t.Fatalf("CheckLimits(%x): %v", b, err)
			}
			// msgpack itself reads exactly these bytes as one value.
			dec := msgpack.NewDecoder(bytes.NewReader(b))
			if err := dec.Skip(); err != nil {
				t.Fatalf("msgpack cannot skip %x: %v", b, err)
			}
			// Every proper prefix is truncated; any extra byte is trailing.
			for i := range len(b) {
				if err := CheckLimits(b[:i], DefaultLimits); !errors.Is(err, ErrMalformed) {
					t.Fatalf("prefix %x: %v, want ErrMalformed", b[:i], err)
				}
			}
			if err := CheckLimits(append(bytes.Clone(b), 0x00), DefaultLimits); !errors.Is(err, ErrMalformed) {
				t.Fatalf("trailing byte: %v, want ErrMalformed", err)
			}
		})
	}
	// Every type code but 0xc1 starts some value above.
	covered := map[byte]bool{}
	for _, b := range oneOfEachType {
		covered[b[0]] = true
	}
	for _, c := range []byte{0x00, 0x8f, 0x9f, 0xbf} {
		covered[c] = true // the fixed ranges, covered by their family
	}
	for c := 0xc0; c <= 0xdf; c++ {
		if c != 0xc1 && !covered[byte(c)] {
			t.Errorf("type code %#x has no case", c)
		}
	}
	if err := CheckLimits([]byte{0xc1}, DefaultLimits); !errors.Is(err, ErrMalformed) {
		t.Fatalf("0xc1: %v, want ErrMalformed", err)
	}
	if err := CheckLimits(nil, DefaultLimits); !errors.Is(err, ErrMalformed) {
		t.Fatalf("empty input: %v, want ErrMalformed", err)
	}
}

func TestCheckLimitsHostile(t *testing.T) {
	nested := bytes.Repeat([]byte{0x91}, 100_000)
	nested = append(nested, 0xc0)
	tests := []struct {
		name string
		b    []byte
		want error
	}{
		{"array32 of 0xffffffff with 5 bytes", []byte{0xdd, 0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4, 5}, ErrTooLarge},
		{"array32 of 1000 with 5 bytes", []byte{0xdd, 0, 0, 0x03, 0xe8, 1, 2, 3, 4, 5}, ErrMalformed},
		{"map32 of 0xffffffff", []byte{0xdf, 0xff, 0xff, 0xff, 0xff, 1, 2}, ErrTooLarge},
		{"map16 of 3 with 5 bytes", []byte{0xde, 0, 3, 1, 2, 3, 4, 5}, ErrMalformed},
		{"fixarray of 15 with 3 bytes", []byte{0x9f, 1, 2, 3}, ErrMalformed},
		{"100k nested fixarrays", nested, ErrTooLarge},
		{"str32 of 4 GiB", []byte{0xdb, 0xff, 0xff, 0xff, 0xff, 'a'}, ErrTooLarge},
		{"str32 of 100 with 1 byte", []byte{0xdb, 0, 0, 0, 100, 'a'}, ErrMalformed},
		{"bin32 of 4 GiB", []byte{0xc6, 0xff, 0xff, 0xff, 0xff}, ErrTooLarge},
		{"ext32 of 4 GiB", []byte{0xc9, 0xff, 0xff, 0xff, 0xff, 0x01}, ErrTooLarge},
		{"ext8 without its type byte", []byte{0xc7, 0x00}, ErrMalformed},
		{"truncated length", []byte{0xdd, 0xff}, ErrMalformed},
		{"truncated uint64", []byte{0xcf, 1, 2, 3}, ErrMalformed},
		{"two values", []byte{0x01, 0x02}, ErrMalformed},
		{"never-used code inside an array", []byte{0x92, 0x01, 0xc1}, ErrMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckLimits(tc.b, DefaultLimits)
			if !errors.Is(err, tc.want) {
				t.Fatalf("CheckLimits: %v, want %v", err, tc.want)
			}
			if tc.want == ErrTooLarge && errors.Is(err, ErrMalformed) || tc.want == ErrMalformed && errors.Is(err, ErrTooLarge) {
				t.Fatalf("error %v matches both sentinels", err)
			}
		})
	}
}

func TestCheckLimitsBounds(t *testing.T) {
	deep := func(n int) []byte { return append(bytes.Repeat([]byte{0x91}, n), 0xc0) }
	l := Limits{MaxDepth: 4, MaxLen: 3, MaxItems: 10}
	tests := []struct {
		name string
		b    []byte
		want error // nil: accepted
	}{
		{"depth at the limit", deep(4), nil},
		{"depth over the limit", deep(5), ErrTooLarge},
		{"array at MaxLen", []byte{0x93, 1, 2, 3}, nil},
		{"array over MaxLen", []byte{0x94, 1, 2, 3, 4}, ErrTooLarge},
		{"map at MaxLen", []byte{0x83, 1, 1, 2, 2, 3, 3}, nil},
		{"map over MaxLen", []byte{0x84, 1, 1, 2, 2, 3, 3, 4, 4}, ErrTooLarge},
		{"string at MaxLen", []byte{0xa3, 'a', 'b', 'c'}, nil},
		{"string over MaxLen", []byte{0xa4, 'a', 'b', 'c', 'd'}, ErrTooLarge},
		{"bin over MaxLen", []byte{0xc4, 4, 1, 2, 3, 4}, ErrTooLarge},
		{"fixext16 is not a length", oneOfEachType["fixext16"], nil},
		{"items at the limit", []byte{0x93, 0x93, 1, 2, 3, 0x93, 1, 2, 3, 0xc0}, nil},                 // 1+4+4+1 = 10
		{"items over the limit", []byte{0x93, 0x93, 1, 2, 3, 0x93, 1, 2, 3, 0x91, 0xc0}, ErrTooLarge}, // 11
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := CheckLimits(tc.b, l); !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Fatalf("CheckLimits(%x): %v, want %v", tc.b, err, tc.want)
			}
		})
	}
	// Zero limits mean the defaults.
	if err := CheckLimits(deep(DefaultLimits.MaxDepth), Limits{}); err != nil {
		t.Fatalf("zero Limits at default depth: %v", err)
	}
	if err := CheckLimits(deep(DefaultLimits.MaxDepth+1), Limits{}); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("zero Limits over default depth: %v", err)
	}
}

// TestCheckLimitsAgreesWithMsgpack: on random documents and random damage to
// them, whatever CheckLimits accepts msgpack reads as exactly one value.
func TestCheckLimitsAgreesWithMsgpack(t *testing.T) {
	rng := rand.New(rand.NewPCG(testSeed(t), 3))
	var gen func(depth int) any
	gen = func(depth int) any {
		switch n := rng.IntN(12); {
		case n == 0 && depth < 5:
			m := map[string]any{}
			for i := range rng.IntN(5) {
				m[string(rune('a'+i))] = gen(depth + 1)
			}
			return m
		case n == 1 && depth < 5:
			var a []any
			for range rng.IntN(20) {
				a = append(a, gen(depth+1))
			}
			return a
		case n == 2:
			return rng.Int64() >> rng.IntN(64)
		case n == 3:
			return -rng.Int64() >> rng.IntN(64)
		case n == 4:
			return rng.Float64()
		case n == 5:
			return float32(rng.Float64())
		case n == 6:
			return bytes.Repeat([]byte{7}, rng.IntN(300))
		case n == 7:
			return string(bytes.Repeat([]byte{'s'}, rng.IntN(70000)>>rng.IntN(16)))
		case n == 8:
			return nil
		case n == 9:
			return rng.IntN(2) == 0
		case n == 10:
			return MakeTimestamp(rng.Int64N(1<<40), 0).Time() // an ext type
		}
		return uint64(rng.Uint32()) << rng.IntN(32)
	}
	accepted := 0
	for i := range cases(2000) {
		doc, err := msgpack.Marshal(gen(0))
		if err != nil {
			t.Fatal(err)
		}
		if err := CheckLimits(doc, DefaultLimits); err != nil {
			t.Fatalf("case %d: valid document %x refused: %v", i, doc, err)
		}
		for range 5 {
			bad := bytes.Clone(doc)
			switch rng.IntN(3) {
			case 0:
				bad = bad[:rng.IntN(len(bad))]
			case 1:
				bad[rng.IntN(len(bad))] = byte(rng.Uint32())
			default:
				bad = append(bad, byte(rng.Uint32()))
			}
			if CheckLimits(bad, DefaultLimits) != nil {
				continue
			}
			accepted++
			rd := bytes.NewReader(bad)
			if err := msgpack.NewDecoder(rd).Skip(); err != nil || rd.Len() != 0 {
				t.Fatalf("case %d: CheckLimits accepted %x but msgpack: %v, %d bytes left", i, bad, err, rd.Len())
			}
		}
	}
	t.Logf("%d damaged documents were still well-formed and agreed", accepted)
}

func TestCheckLimitsAllocations(t *testing.T) {
	doc, err := MarshalRecord(benchRecord(200))
	if err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(10, func() { _ = CheckLimits(doc, DefaultLimits) }); n != 0 {
		t.Fatalf("CheckLimits of a 200-field record allocates %v times", n)
	}
}

// TestUnmarshalHostile: a few bytes of length prefix inside an op or a
// record state are refused before msgpack allocates for them.
func TestUnmarshalHostile(t *testing.T) {
	op := Op{ID: at(2000, ann), Team: "wigan", Collection: "people", Record: "p1", Field: "phone", Kind: KindWrite, Value: MustValue("x")}
	good, err := MarshalOp(&op)
	if err != nil {
		t.Fatal(err)
	}
	withPred := func(prefix ...byte) []byte {
		b := bytes.Clone(good)
		b[0]++ // one more key
		b = append(b, 0xa1, 'p')
		return append(b, prefix...)
	}
	rec := NewRecord("wigan", "people", "p1")
	mustApply(t, rec, rec.Write(at(1000, ann), "phone", MustValue("x")))
	goodRec, err := MarshalRecord(rec)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		decode func([]byte) error
		b      []byte
		want   error
	}{
		{"op pred array32 0xffffffff", unmarshalOpErr, withPred(0xdd, 0xff, 0xff, 0xff, 0xff, 0xc4), ErrTooLarge},
		{"op pred array32 at MaxLen", unmarshalOpErr, withPred(0xdd, 0x00, 0x10, 0x00, 0x00, 0xc4, 0x18), ErrMalformed},
		{"op pred nested 100k deep", unmarshalOpErr, withPred(append(bytes.Repeat([]byte{0x91}, 100_000), 0xc0)...), ErrTooLarge},
		{"op truncated", unmarshalOpErr, good[:len(good)-1], ErrMalformed},
		{"op with trailing byte", unmarshalOpErr, append(bytes.Clone(good), 0xc0), ErrMalformed},
		{"record fields map32 0xffffffff", unmarshalRecordErr, append(bytes.Clone(goodRec[:bytes.Index(goodRec, []byte{0xa1, 'f'})+2]), 0xdf, 0xff, 0xff, 0xff, 0xff), ErrTooLarge},
		{"record truncated", unmarshalRecordErr, goodRec[:len(goodRec)-3], ErrMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			err := tc.decode(tc.b)
			runtime.ReadMemStats(&after)
			if !errors.Is(err, tc.want) || !errors.Is(err, ErrMalformed) {
				t.Fatalf("decode: %v, want %v (and ErrMalformed)", err, tc.want)
			}
			if n := after.TotalAlloc - before.TotalAlloc; n > 1<<20 {
				t.Fatalf("refusing %d bytes allocated %d bytes", len(tc.b), n)
			}
		})
	}
}

func unmarshalOpErr(b []byte) error     { _, err := UnmarshalOp(b); return err }
func unmarshalRecordErr(b []byte) error { _, err := UnmarshalRecord(b); return err }

// TestShortEndAgreesWithScan: where shortEnd finds a value's end without
// scanning, scan finds the same end and no error, for every first byte
// and every length of what follows up to 300 bytes.
func TestShortEndAgreesWithScan(t *testing.T) {
	buf := make([]byte, 301)
	for i := range buf {
		buf[i] = 0x05
	}
	for c := range 256 {
		buf[0] = byte(c)
		buf[1] = 7 // a str8's length
		for n := 1; n <= len(buf); n++ {
			b := buf[:n]
			end := shortEnd(b, 0)
			if end == 0 {
				continue
			}
			got, err := scan(b, 0, DefaultLimits)
			if err != nil || got != end {
				t.Fatalf("0x%02x in %d bytes: shortEnd %d, scan %d %v", c, n, end, got, err)
			}
		}
	}
}
