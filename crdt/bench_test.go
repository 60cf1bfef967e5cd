package crdt

import "fmt"

// benchRecord returns a record of n fields as a day of home visits leaves
// it: mostly registers, some overwritten and some in conflict, a few sets
// and logs.
func benchRecord(n int) *Record {
	r := NewRecord("wigan", "people", "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0")
	ms := int64(1_795_000_000_000)
	next := func(rep ReplicaID) OpID { ms++; return OpID{Time: MakeTimestamp(ms, 0), Replica: rep} }
	for i := range n {
		name := fmt.Sprintf("field_%03d", i)
		var ops []Op
		switch i % 10 {
		case 7:
			ops = append(ops, r.Add(next(ann), name, MustValue("mobility")), r.Add(next(bea), name, MustValue("money")))
		case 8:
			ops = append(ops, r.Append(next(ann), name, MustValue("Visited; Mrs Jones well, walking with a frame.")))
			ops = append(ops, r.Append(next(bea), name, MustValue("Phoned: GP appointment booked for Tuesday.")))
		default:
			ops = append(ops, r.Write(next(ann), name, MustValue(fmt.Sprintf("value %d", i))))
		}
		for j := range ops {
			if err := r.Apply(&ops[j]); err != nil {
				panic(err)
			}
		}
		if i%10 < 3 { // overwritten once
			op := r.Write(next(bea), name, MustValue(i))
			if err := r.Apply(&op); err != nil {
				panic(err)
			}
		}
		if i%10 == 0 { // and in conflict
			op := r.Write(next(coord), name, MustValue("concurrent"))
			op.Pred = nil
			if err := r.Apply(&op); err != nil {
				panic(err)
			}
		}
	}
	return r
}
