package testenv

import (
	"context"
	"errors"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
)

// Eventually polls cond every interval (at once first) until it holds, and returns an error with
// cond's last message after timeout: the tests' one polling loop, on apimachinery's wait.
func Eventually(timeout, interval time.Duration, cond func() (bool, string)) error {
	var last string
	err := wait.PollUntilContextTimeout(context.Background(), interval, timeout, true, func(context.Context) (bool, error) {
		ok, msg := cond()
		last = msg
		return ok, nil
	})
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("timed out after %s: %s", timeout, last)
	}
	return err
}
