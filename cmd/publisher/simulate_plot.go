package main

import (
	"fmt"
	"image/color"
	"os"
	"path/filepath"
	"strings"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
	"gonum.org/v1/plot/vg/vgsvg"

	"github.com/runnerfleet/runnerfleet/scaling/sim"
)

// plotPoints bounds the points of one line: a week of one-minute ticks is folded into buckets
// keeping each bucket's largest value, so peaks stay visible and the SVG stays small.
const plotPoints = 1200

// Line colours: demand in grey, then one colour per policy.
var (
	demandColor  = color.RGBA{R: 120, G: 120, B: 120, A: 255}
	policyColors = []color.Color{
		color.RGBA{R: 214, G: 39, B: 40, A: 255},
		color.RGBA{R: 31, G: 119, B: 180, A: 255},
		color.RGBA{R: 44, G: 160, B: 44, A: 255},
		color.RGBA{R: 148, G: 103, B: 189, A: 255},
	}
)

// writePlot draws (as SVG, or PNG when path ends in .png), over time of day, the demand (running + queued jobs) against each policy's
// capacity (job slots taking jobs) in the top panel, and each policy's queue wait (the oldest
// waiting job's age, minutes) in the bottom panel, as one SVG file.
func writePlot(path, trace string, results []namedResult) error {
	if len(results) == 0 {
		return fmt.Errorf("plot: no result to draw")
	}
	ticks := timeTicks{loc: results[0].Timeline[0].At.Location(), span: results[0].Duration}

	top := plot.New()
	top.Title.Text = "Demand and capacity — " + trace
	top.X.Tick.Marker = ticks
	top.Y.Label.Text = "jobs / job slots"
	top.Y.Min = 0
	top.Legend.Top = true
	top.Add(plotter.NewGrid())
	demand, err := line(results[0].Timeline, func(s sim.Sample) float64 { return float64(s.Running + s.Queued) }, demandColor, true)
	if err != nil {
		return err
	}
	top.Add(demand)
	top.Legend.Add("demand (running + queued, "+results[0].Policy+")", demand)

	bottom := plot.New()
	bottom.Title.Text = "Queue wait"
	bottom.X.Tick.Marker = ticks
	bottom.X.Label.Text = "time of day (" + results[0].Timeline[0].At.Location().String() + ")"
	bottom.Y.Label.Text = "oldest waiting job (min)"
	bottom.Y.Min = 0
	bottom.Legend.Top = true
	bottom.Add(plotter.NewGrid())

	for i, r := range results {
		c := policyColors[i%len(policyColors)]
		capLine, err := line(r.Timeline, func(s sim.Sample) float64 { return float64(s.Capacity) }, c, false)
		if err != nil {
			return err
		}
		top.Add(capLine)
		top.Legend.Add("capacity, "+r.Policy, capLine)
		waitLine, err := line(r.Timeline, func(s sim.Sample) float64 { return s.OldestWait.Minutes() }, c, false)
		if err != nil {
			return err
		}
		bottom.Add(waitLine)
		bottom.Legend.Add(fmt.Sprintf("%s (p95 %.0f s)", r.Policy, r.P95), waitLine)
	}

	const width, height = 30 * vg.Centimeter, 20 * vg.Centimeter
	var canvas vg.CanvasWriterTo = vgsvg.New(width, height)
	var dc draw.Canvas
	if strings.EqualFold(filepath.Ext(path), ".png") {
		png := vgimg.PngCanvas{Canvas: vgimg.New(width, height)}
		canvas, dc = png, draw.New(png)
	} else {
		dc = draw.New(canvas.(*vgsvg.Canvas))
	}
	tiles := draw.Tiles{Rows: 2, Cols: 1, PadX: vg.Millimeter, PadY: 4 * vg.Millimeter, PadTop: 2 * vg.Millimeter,
		PadBottom: 2 * vg.Millimeter, PadLeft: 2 * vg.Millimeter, PadRight: 4 * vg.Millimeter}
	plots := [][]*plot.Plot{{top}, {bottom}}
	canvases := plot.Align(plots, tiles, dc)
	top.Draw(canvases[0][0])
	bottom.Draw(canvases[1][0])

	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("writing plot: %w", err)
	}
	if _, err := canvas.WriteTo(f); err != nil {
		f.Close()
		return fmt.Errorf("writing plot: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("writing plot: %w", err)
	}
	return nil
}

// line folds a timeline into at most plotPoints points (the largest value of each bucket) and
// makes a line of them.
func line(tl []sim.Sample, value func(sim.Sample) float64, c color.Color, fill bool) (*plotter.Line, error) {
	bucket := max(1, (len(tl)+plotPoints-1)/plotPoints)
	var xys plotter.XYs
	for i := 0; i < len(tl); i += bucket {
		end := min(i+bucket, len(tl))
		v := 0.0
		for _, s := range tl[i:end] {
			v = max(v, value(s))
		}
		xys = append(xys, plotter.XY{X: float64(tl[i].At.Unix()), Y: v})
	}
	l, err := plotter.NewLine(xys)
	if err != nil {
		return nil, fmt.Errorf("plot: %w", err)
	}
	l.Color = c
	l.Width = vg.Points(1.2)
	if fill {
		l.FillColor = color.NRGBA{R: 190, G: 190, B: 190, A: 170}
		l.Width = vg.Points(0.5)
	}
	return l, nil
}

// timeTicks marks the time of day: every 3 hours over a day or so, else midnight of each day
// (labelled with the weekday) with unlabelled marks every 6 hours.
type timeTicks struct {
	loc  *time.Location
	span time.Duration
}

// Ticks implements plot.Ticker over Unix seconds.
func (tt timeTicks) Ticks(lo, hi float64) []plot.Tick {
	step, major, format := 3*time.Hour, 3*time.Hour, "15:04"
	if tt.span > 36*time.Hour {
		step, major, format = 6*time.Hour, 24*time.Hour, "Mon 15:04"
	}
	start := time.Unix(int64(lo), 0).In(tt.loc)
	t := time.Date(start.Year(), start.Month(), start.Day(), 0, 0, 0, 0, tt.loc)
	var out []plot.Tick
	for ; float64(t.Unix()) <= hi; t = t.Add(step) {
		if float64(t.Unix()) < lo {
			continue
		}
		tick := plot.Tick{Value: float64(t.Unix())}
		if sinceMidnight := t.Sub(time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, tt.loc)); sinceMidnight%major == 0 {
			tick.Label = t.Format(format)
		}
		out = append(out, tick)
	}
	return out
}
