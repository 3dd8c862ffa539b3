package bench

import (
	"os"
	"testing"
)

func TestMain(m *testing.M) {
	code := m.Run()
	removeLauncher()
	os.Exit(code)
}
