"""Load, reduce and draw tiltsweep results. `analysis.plots` is the notebook API; only
`analysis.figures` imports matplotlib and seaborn."""
