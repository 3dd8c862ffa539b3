//go:build mage

// The example's magefile: what a project that deploys with gitric writes.
package main

import (
	//mage:import gitric
	"github.com/gitric/gitric/gitrictasks"
)

func init() {
	// prod: real servers. Replace the host, or override it without editing
	// this file: GITRIC_HOSTS=deploy@web1,deploy@web2:2222 mage gitric:prod gitric:deploy
	gitrictasks.SetStage("prod", gitrictasks.StageConfig{
		Hosts: []string{"deploy@hello.example.com"},
		Path:  "apps/hello", // relative to the deploy user's home
		Stop:  "sh example/hello.sh stop",
		Start: "sh example/hello.sh start",
	})
	// local: the embedded SSH host (mage gitric:local gitric:deploy); only its path and
	// commands come from here.
	gitrictasks.SetStage("local", gitrictasks.StageConfig{
		Path:  "hello",
		Stop:  "sh example/hello.sh stop",
		Start: "sh example/hello.sh start",
	})
}
