package gitrictasks

import (
	"errors"
	"fmt"
	"os"
	"strings"
)

// The call is the mage command line that runs this process, as the user
// typed it: mage runs the compiled magefile with the targets (and their
// arguments) as its arguments, after its own flags. gitric reads it to
// word its hints in the user's terms ("gitric:allowDirty" when the package
// is imported as gitric, "allowDirty" when it is imported at the root) and
// to find setter targets typed after the action they were meant for.

// kind tells setter targets (they record a choice) from actions.
type kind int

const (
	setter kind = iota
	action
)

// target is one of the package's targets as mage names it.
type target struct {
	name  string // as mage lists it: lower camel case
	nargs int    // arguments it takes from the command line
	kind  kind
	// deployOnly setters make no sense for unlock and are left out of
	// its hint.
	deployOnly bool
}

// targets are the package's mage targets, by lower-case name.
var targets = map[string]target{}

func init() {
	for _, t := range []target{
		{name: "prod"}, {name: "stage", nargs: 1}, {name: "local"}, {name: "only", nargs: 1},
		{name: "allowDirty", deployOnly: true}, {name: "forcePush", deployOnly: true},
		{name: "ignoreUntracked", deployOnly: true}, {name: "discardEdits", deployOnly: true},
		{name: "takeOver", deployOnly: true}, {name: "message", nargs: 1, deployOnly: true},
		{name: "acceptNew"}, {name: "ref", nargs: 1, deployOnly: true},
		{name: "deploy", kind: action}, {name: "rollback", kind: action}, {name: "swap", kind: action},
		{name: "status", kind: action}, {name: "unlock", kind: action},
		{name: "plan", kind: action}, {name: "releases", kind: action},
	} {
		targets[strings.ToLower(t.name)] = t
	}
}

// word is a target of the call that is one of the package's names.
type word struct {
	pos, end int    // args[pos] is the name, args[pos+1:end] its arguments
	prefix   string // the namespace as typed, with its colon ("gitric:"), or ""
	target
}

// call is one command line: its targets, and those of its words that
// name the package's targets.
type call struct {
	args  []string
	words []word
}

// commandLine is this process's call: os.Args without the flags that the
// compiled magefile itself takes (-v, -l, -h, -t <duration>) when it is run
// directly rather than through mage, which passes the targets only.
func commandLine() []string {
	args := os.Args[1:]
	for len(args) > 0 {
		a := args[0]
		if a == "--" {
			return args[1:]
		}
		if len(a) < 2 || a[0] != '-' {
			return args
		}
		args = args[1:]
		if strings.TrimLeft(a, "-") == "t" && len(args) > 0 {
			args = args[1:]
		}
	}
	return args
}

func parseCall(args []string) call {
	c := call{args: args}
	for i := 0; i < len(args); {
		prefix, name := "", args[i]
		if j := strings.LastIndexByte(name, ':'); j >= 0 {
			prefix, name = name[:j+1], name[j+1:]
		}
		t, ok := targets[strings.ToLower(name)]
		if !ok || i+1+t.nargs > len(args) {
			i++ // the magefile's own target, or an argument of one
			continue
		}
		c.words = append(c.words, word{pos: i, end: i + 1 + t.nargs, prefix: prefix, target: t})
		i += 1 + t.nargs
	}
	return c
}

// ours returns the words of the call that are the package's targets, and
// the index among them of the action running now, or -1 when the call
// does not name it (a target of the magefile that calls Deploy itself).
// ran are the names of the package's targets that this process has run so
// far, the action last: they are matched to the words in order, skipping
// the targets the magefile ran itself, so that a magefile target named
// like one of ours (say, its own "status" next to "gitric:status") is not
// taken for ours. The words after the action have not run yet: those with
// the action's namespace are taken for ours.
func (c call) ours(ran []string) ([]word, int) {
	var matched []word
	next, found := 0, false
	for _, name := range ran {
		found = false
		for i := next; i < len(c.words); i++ {
			if c.words[i].name == name {
				matched, next, found = append(matched, c.words[i]), i+1, true
				break
			}
		}
	}
	if !found || matched[len(matched)-1].kind != action {
		return nil, -1
	}
	cur := len(matched) - 1
	for _, w := range c.words[next:] {
		if strings.EqualFold(w.prefix, matched[cur].prefix) {
			matched = append(matched, w)
		}
	}
	return matched, cur
}

// group is the part of the call that the action at ours[cur] runs with:
// from the end of the previous action of ours (or the call's start) to
// the end of the call. first is where its first word of ours is.
func group(c call, ours []word, cur int) (start, first int) {
	first = ours[cur].pos
	for i := cur - 1; i >= 0; i-- {
		if ours[i].kind == action {
			start = ours[i].end
			break
		}
		first = ours[i].pos
	}
	return start, first
}

// ErrOrder means a setter target comes after the last action of the call:
// mage runs targets in order, so it would apply to nothing.
var ErrOrder = errors.New("misplaced target")

// checkOrder refuses a call whose setters come after its last action of
// ours (mage allowDirty prod deploy, not mage prod deploy allowDirty), and
// says where to put them.
func checkOrder(c call, ours []word) error {
	last := -1 // the call's last action of ours
	for i, w := range ours {
		if w.kind == action {
			last = i
		}
	}
	var late []word
	for _, w := range ours[last+1:] {
		if w.kind == setter {
			late = append(late, w)
		}
	}
	if len(late) == 0 {
		return nil
	}
	names := make([]string, len(late))
	for i, w := range late {
		names[i] = strings.Join(c.args[w.pos:w.end], " ")
	}
	// The fixed call: the same, with the late words moved to the last
	// action's first word of ours. Nothing has run yet: it is refused
	// before the first action does anything.
	_, first := group(c, ours, last)
	var fixed []string
	for i := 0; i < len(c.args); {
		if i == first {
			for _, w := range late {
				fixed = append(fixed, c.args[w.pos:w.end]...)
			}
		}
		if w, ok := wordAt(late, i); ok {
			i = w.end
			continue
		}
		fixed = append(fixed, c.args[i])
		i++
	}
	verb, they, them := "comes", "it", "it"
	if len(late) > 1 {
		verb, they, them = "come", "they", "them"
	}
	act := c.args[ours[last].pos]
	return fmt.Errorf("%w: %s %s after %s in this call, and mage runs targets in the order given, so %s would apply to nothing; put %s before %s: mage %s",
		ErrOrder, strings.Join(names, ", "), verb, act, they, them, act, strings.Join(fixed, " "))
}

// withSetter is the call again, from the action's group on, with one more
// setter target (e.g. allowDirty) before the group's first word of ours.
func withSetter(c call, ours []word, cur int, name string) string {
	start, first := group(c, ours, cur)
	out := []string{"mage"}
	out = append(out, c.args[start:first]...)
	out = append(out, ours[cur].prefix+name)
	out = append(out, c.args[first:]...)
	return strings.Join(out, " ")
}

// asUnlock is the action's group up to the action, without the setters
// that only a deploy uses, and unlock for the action.
func asUnlock(c call, ours []word, cur int) string { return asAction(c, ours, cur, "unlock") }

// asAction is the call's selection (stage, role, SSH choices) with another
// action: the hint for unlock or status.
func asAction(c call, ours []word, cur int, act string) string {
	start, _ := group(c, ours, cur)
	out := []string{"mage"}
	for i := start; i < ours[cur].pos; {
		if w, ok := wordAt(ours, i); ok && w.deployOnly {
			i = w.end
			continue
		}
		out = append(out, c.args[i])
		i++
	}
	return strings.Join(append(out, ours[cur].prefix+act), " ")
}

func wordAt(ours []word, pos int) (word, bool) {
	for _, w := range ours {
		if w.pos == pos {
			return w, true
		}
	}
	return word{}, false
}

// ErrNotApplicable means a modifier target was given to an action it
// does nothing for (allowDirty before rollback): never silently ignored.
var ErrNotApplicable = errors.New("a modifier that does nothing here")

// applies are the modifiers each action reads, besides the stage targets
// (prod, stage, local), which every action reads; deploy and plan read
// them all.
var applies = map[string][]string{
	"rollback": {"only", "acceptNew", "ref", "message", "discardEdits"},
	"swap":     {"only", "acceptNew", "message"},
	"status":   {"only", "acceptNew", "ref"},
	"releases": {"only", "acceptNew"},
	"unlock":   {"only", "acceptNew"},
}

// checkApplies refuses the setters that ran for the action act (those
// since the action before it) when act does nothing with them, and says
// the call without them.
func checkApplies(c call, ours []word, cur int, ran []string, act string) error {
	ok, limited := applies[strings.ToLower(act)]
	if !limited {
		return nil
	}
	reads := map[string]bool{"prod": true, "stage": true, "local": true}
	for _, n := range ok {
		reads[strings.ToLower(n)] = true
	}
	var extra []string
	for i := len(ran) - 2; i >= 0; i-- {
		t := targets[strings.ToLower(ran[i])]
		if t.kind == action {
			break
		}
		if !reads[strings.ToLower(t.name)] {
			extra = append([]string{t.name}, extra...)
		}
	}
	if len(extra) == 0 {
		return nil
	}
	fix := "remove " + strings.Join(extra, ", ")
	if cur >= 0 {
		start, _ := group(c, ours, cur)
		drop := map[int]word{}
		var typed []string
		for _, w := range ours[:cur] {
			if w.pos >= start && !reads[strings.ToLower(w.name)] {
				drop[w.pos] = w
				typed = append(typed, c.args[w.pos])
			}
		}
		if len(typed) == len(extra) {
			extra = typed // as the user wrote them
		}
		fixed := []string{"mage"}
		for i := 0; i < len(c.args); {
			if w, ok := drop[i]; ok {
				i = w.end
				continue
			}
			fixed = append(fixed, c.args[i])
			i++
		}
		fix = strings.Join(fixed, " ")
	}
	verb, it := "does", "it"
	if len(extra) > 1 {
		verb, it = "do", "them"
	}
	return fmt.Errorf("%w: %s %s nothing for %s (it reads %s and the stage); without %s: %s",
		ErrNotApplicable, strings.Join(extra, ", "), verb, act, strings.Join(ok, ", "), it, fix)
}
