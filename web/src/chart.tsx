// chart.tsx: a live line chart (uPlot) of a few series over time. uPlot
// is a chunk of its own, loaded when the first chart appears: the first
// page's script is that much smaller to parse, and its cards show at once
// (the charts hold no sample before the second tick anyway).
import { useEffect, useRef } from "preact/hooks";
import type uPlot from "uplot";
import "uplot/dist/uPlot.min.css";

let lib: Promise<typeof uPlot> | null = null;
const loadUplot = () => (lib ??= import("uplot").then((m) => m.default));

export interface Series { label: string; color: string }

/** data[0] = unix seconds, data[i] = series i-1. */
export function Chart({ title, series, data, unit }: { title: string; series: Series[]; data: number[][]; unit: string }) {
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  const latest = useRef(data);
  latest.current = data;
  useEffect(() => {
    const el = box.current!;
    let gone = false;
    let ro: ResizeObserver | null = null;
    const opts: uPlot.Options = {
      width: Math.max(200, el.clientWidth || 300), height: 160,
      legend: { show: true, live: false },
      scales: { x: { time: true, range: (_u, _min, max) => {
        // The last two minutes, ending now while there is no sample yet.
        const hi = Number.isFinite(max) && max > 1e9 ? max : Date.now() / 1000;
        return [hi - 120, hi];
      } } },
      cursor: { drag: { x: false, y: false } },
      axes: [{ stroke: "currentColor", grid: { stroke: "rgba(128,128,128,.2)" },
        values: (_u, ticks) => ticks.map((t) => new Date(t * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })) },
        { stroke: "currentColor", grid: { stroke: "rgba(128,128,128,.2)" }, size: 60,
          values: (_u, v) => v.map((x) => `${+x.toFixed(1)}${unit}`) }],
      series: [{}, ...series.map((s) => ({ label: s.label, stroke: s.color, width: 2 }))],
    };
    loadUplot().then((UPlot) => {
      if (gone) return;
      plot.current = new UPlot(opts, latest.current as uPlot.AlignedData, el);
      ro = new ResizeObserver(() => plot.current?.setSize({ width: Math.max(200, el.clientWidth), height: 160 }));
      ro.observe(el);
    });
    return () => { gone = true; ro?.disconnect(); plot.current?.destroy(); plot.current = null; };
  }, [series.map((s) => s.label).join()]);
  useEffect(() => { plot.current?.setData(data as uPlot.AlignedData); }, [data]);
  return (
    <figure class="chart">
      <figcaption>{title}</figcaption>
      <div ref={box} class="plot" role="img" aria-label={`${title} chart`} />
    </figure>
  );
}

/** Keeps the last n points of a few series, fed one sample at a time. */
export class Ring {
  data: number[][];
  constructor(public n: number, nseries: number) { this.data = Array.from({ length: nseries + 1 }, () => []); }
  push(t: number, vals: number[]) {
    const d = this.data.map((a, i) => [...a, i ? vals[i - 1] : t].slice(-this.n));
    this.data = d;
    return d;
  }
}
