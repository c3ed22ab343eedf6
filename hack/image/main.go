// Command image writes the local cluster's images as docker-archive tarballs, without a container
// engine (test/cluster/image). Usage, from the module root:
//
//	go run ./hack/image -kind manager -ref dbtoken.local/databricks-token-operator:dev -o manager.tar
//
// then `hack/local-cluster.sh load manager.tar` imports it into the cluster's containerd.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	"github.com/dbtoken/databricks-token-operator/test/cluster/image"
)

func main() {
	kind := flag.String("kind", "", "manager, pause, consumer or sdk-consumer")
	ref := flag.String("ref", "", "image reference to tag it with, e.g. dbtoken.local/pause:1")
	out := flag.String("o", "", "tarball to write")
	root := flag.String("C", ".", "module root")
	flag.Parse()
	var spec image.Spec
	switch *kind {
	case "manager":
		spec = image.Manager(*ref)
	case "pause":
		spec = image.Pause(*ref)
	case "consumer":
		spec = image.Consumer(*ref)
	case "sdk-consumer":
		spec = image.SDKConsumer(*ref)
	default:
		fmt.Fprintln(os.Stderr, "image: -kind must be manager, pause, consumer or sdk-consumer")
		os.Exit(2)
	}
	if *ref == "" || *out == "" {
		fmt.Fprintln(os.Stderr, "image: -ref and -o are required")
		os.Exit(2)
	}
	if err := image.Write(context.Background(), *root, spec, *out); err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
}
