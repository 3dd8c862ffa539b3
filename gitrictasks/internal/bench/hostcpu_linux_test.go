package bench

import (
	"os"
	"strconv"
	"strings"
	"time"
)

// userHZ is the unit of the times in /proc/<pid>/stat.
const userHZ = 100

// childrenCPU is the user and system CPU time of the children that the
// process pid has waited for, their own waited-for descendants included:
// for an sshd, the CPU time of every connection it has served, with the
// shells and commands run in them. It first waits (up to wait) for pid to
// have no children left, so that the latest connections are counted. ok
// is false when it is unknown.
func childrenCPU(pid int, wait time.Duration) (cpu time.Duration, ok bool) {
	children := "/proc/" + strconv.Itoa(pid) + "/task/" + strconv.Itoa(pid) + "/children"
	for deadline := time.Now().Add(wait); ; time.Sleep(5 * time.Millisecond) {
		b, err := os.ReadFile(children)
		if err != nil {
			return 0, false
		}
		if len(strings.TrimSpace(string(b))) == 0 || time.Now().After(deadline) {
			break
		}
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, false
	}
	// The fields after the command's name, which is in parentheses and
	// may hold anything, start with the third: cutime and cstime are the
	// 16th and 17th.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 15 {
		return 0, false
	}
	var ticks int64
	for _, s := range f[13:15] {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, false
		}
		ticks += n
	}
	return time.Duration(ticks) * time.Second / userHZ, true
}
