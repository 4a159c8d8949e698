package sqs

import (
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
)

func TestSetDelayRoundsUpAndCaps(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want string // "" = not set
	}{
		{-time.Second, ""},
		{0, ""},
		{200 * time.Millisecond, "1"},
		{2 * time.Second, "2"},
		{2*time.Second + time.Nanosecond, "3"},
		{time.Hour, "900"},
	} {
		msg := message.NewMessage("id", nil)
		SetDelay(msg, tc.d)
		if got, ok := msg.Metadata[MetaDelaySeconds]; got != tc.want || ok != (tc.want != "") {
			t.Errorf("SetDelay(%s): %s=%q (set %v), want %q", tc.d, MetaDelaySeconds, got, ok, tc.want)
		}
	}
}
