"""Illumina Clarity LIMS (GenoLogics) source: its API client (its simulator: pwh/simulators/clarity)."""
