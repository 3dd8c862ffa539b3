package deploy_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"

	"github.com/gitric/gitric/gitrictasks/deploy"
)

// A deploy from a Go program, without mage: the stage, then the deploy's
// options around the shared ones. A refusal names its override.
func ExampleRun() {
	common := deploy.Options{
		Stage: deploy.Stage{
			Name:  "prod",
			Hosts: []string{"deploy@web1.example.com", "deploy@web2.example.com"},
			Path:  "apps/shop",
			Mode:  deploy.ModeRelease,
			Build: "make",
			Stop:  "systemctl --user stop shop",
			Start: "systemctl --user start shop",
			Check: "curl -fsS http://127.0.0.1:8080/health",
		},
		Out: os.Stdout,
	}
	res, err := deploy.Run(context.Background(), deploy.DeployOptions{
		Options:        common,
		RolloutOptions: deploy.RolloutOptions{Batch: "50%", Message: "release 1.4"},
		Rev:            "v1.4.0",
	})
	var dirty *deploy.DirtyError
	switch {
	case errors.As(err, &dirty):
		log.Fatalf("commit or stash first: %v", dirty.Paths)
	case errors.Is(err, deploy.ErrLocked):
		log.Fatalf("another deploy runs: %v", err)
	case err != nil:
		log.Fatal(err)
	}
	for _, h := range res.Hosts {
		fmt.Println(h.Host, h.Outcome, h.Downtime)
	}
}

// Rolling back takes the shared options and, optionally, the deploy to go
// back to (a commit, a tag or a release directory the hosts recorded).
func ExampleRollback() {
	common := deploy.Options{
		Stage: deploy.Stage{Name: "prod", Hosts: []string{"deploy@web1.example.com"}, Path: "apps/shop", Mode: deploy.ModeRelease},
		Out:   os.Stdout,
	}
	if _, err := deploy.Rollback(context.Background(), deploy.RollbackOptions{Options: common, Rev: "v1.3.2"}); err != nil {
		log.Fatal(err)
	}
}

// Status compares every host with a local revision, read-only.
func ExampleStatus() {
	rep, err := deploy.Status(context.Background(), deploy.StatusOptions{
		Options: deploy.Options{Stage: deploy.Stage{Name: "prod", Hosts: []string{"deploy@web1.example.com"}, Path: "apps/shop"}},
		Rev:     "main",
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(rep.Verdict)
}
