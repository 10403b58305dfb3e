package doowexporter

import (
	"hash/maphash"
	"slices"
	"strconv"
	"strings"

	"github.com/google/uuid"
)

// Rule P of docs/conversion.md ("Packing"): one event carries every measurement of its
// stream. The Python package packs alike; tests/vectors/packing/ holds both to it.
//
// The group is also bounded by the ScopeMetrics a point came in (event.scope): the
// sending queue may merge a request with other requests (whole ResourceMetrics, so a
// ScopeMetrics always travels whole; the shipped configs set no max_size, which would
// split one), and a request re-read after a crash may meet other neighbours. Packing
// only what travels together gives a point the same packed event, and so the same id,
// on every send.

var (
	nsPacked = uuid.MustParse("3b8f2c6e-9d41-4c7a-b5e0-7f1a2d6c9e43")
	packSeed = maphash.MakeSeed()
)

// maxMeasurements bounds a packed event's measurements; more start another event.
const maxMeasurements = 100

// pack returns the events with the packable members of each group packed (rule P), in
// the input's order, a packed event standing where its earliest member stood.
func pack(events []event) []event {
	// most pushes have nothing to pack (a point per stream): a first pass counts the
	// groups by a hash of their key, without keeping the keys
	var key []byte
	hashes := make(map[uint64]int32, len(events))
	repeated := false
	for i := range events {
		if events[i].packable {
			key = groupKey(key[:0], &events[i])
			h := maphash.Bytes(packSeed, key)
			hashes[h]++
			repeated = repeated || hashes[h] > 1
		}
	}
	if !repeated {
		return events
	}
	groups := map[string][]int{} // group key -> member indexes, in input order
	for i := range events {
		if events[i].packable {
			key = groupKey(key[:0], &events[i])
			if hashes[maphash.Bytes(packSeed, key)] > 1 {
				groups[string(key)] = append(groups[string(key)], i)
			}
		}
	}
	packedAt := map[int]event{} // earliest member index -> its packed event
	skip := map[int]bool{}      // the other members of packed events
	for _, members := range groups {
		if len(members) < 2 {
			continue
		}
		for _, made := range packGroup(events, members) {
			if len(made) < 2 {
				continue // an event of one member is that member, unchanged
			}
			first := slices.Min(made)
			packedAt[first] = packedEvent(events, made)
			for _, m := range made {
				if m != first {
					skip[m] = true
				}
			}
		}
	}
	out := make([]event, 0, len(events)-len(skip))
	for i := range events {
		switch {
		case skip[i]:
		case packedAt[i].eventID != "":
			out = append(out, packedAt[i])
		default:
			out = append(out, events[i])
		}
	}
	return out
}

// packGroup assigns a group's members to events: in order of (metric name, event id),
// each to the first event that has no measurement of its metric and room, else to a new
// one. It returns each event's members.
func packGroup(events []event, members []int) [][]int {
	order := slices.Clone(members)
	slices.SortFunc(order, func(a, b int) int {
		if c := strings.Compare(events[a].metric, events[b].metric); c != 0 {
			return c
		}
		return strings.Compare(events[a].eventID, events[b].eventID)
	})
	var made [][]int
	for _, m := range order {
		placed := false
		for j, taken := range made {
			// members come in metric order: an event has this metric iff its last has
			if last := taken[len(taken)-1]; events[last].metric != events[m].metric && len(taken) < maxMeasurements {
				made[j] = append(taken, m)
				placed = true
				break
			}
		}
		if !placed {
			made = append(made, []int{m})
		}
	}
	return made
}

// packedEvent is the event of two or more members (given in metric name order): the
// group's fields, the members' measurements, an id derived from the members' ids.
func packedEvent(events []event, members []int) event {
	ids := make([]string, len(members))
	for i, m := range members {
		ids[i] = events[m].eventID
	}
	slices.Sort(ids)
	var name []byte
	for _, id := range ids {
		name = appendEncStr(name, id)
	}
	first := events[members[0]]
	packed := event{
		eventID:     uuid.NewSHA1(nsPacked, name).String(),
		licenseID:   first.licenseID,
		nanos:       first.nanos / 1_000_000 * 1_000_000,
		unit:        first.unit,
		metric:      first.metric,
		quantity:    first.quantity,
		attribution: first.attribution,
		scope:       first.scope,
	}
	for _, m := range members[1:] {
		packed.more = append(packed.more, measurement{events[m].metric, events[m].quantity})
	}
	return packed
}

// groupKey: the ScopeMetrics, license, unit, attribution (its canonical id encoding:
// typed, so 1, 1.0 and true differ) and the time in milliseconds.
func groupKey(key []byte, e *event) []byte {
	key = strconv.AppendInt(key, int64(e.scope), 10)
	key = appendEncStr(appendEncStr(key, e.licenseID), e.unit)
	key = appendEncAttribution(key, e.attribution)
	return appendEncUint(key, e.nanos/1_000_000)
}

// appendEncAttribution is the canonical encoding (docs/conversion.md, "Event ids") of
// attribution, which is kept sorted by key.
func appendEncAttribution(b []byte, attribution []attr) []byte {
	b = append(strconv.AppendInt(append(b, 'm'), int64(len(attribution)), 10), '{')
	for _, a := range attribution {
		b = appendEncStr(b, a.key)
		switch a.value.kind {
		case kindStr:
			b = appendEncStr(b, a.value.str)
		case kindBool:
			b = append(b, 'b', byte('0'+a.value.bits))
		case kindInt:
			b = appendEncInt(b, int64(a.value.bits))
		case kindDouble:
			b = append(b, 'd')
			for shift := 60; shift >= 0; shift -= 4 {
				b = append(b, hexDigits[a.value.bits>>shift&0xf])
			}
		default:
			b = append(b, 'n')
		}
	}
	return append(b, '}')
}
