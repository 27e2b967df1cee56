"""Illumina Clarity LIMS (GenoLogics) source: client, deterministic dataset, simulator."""
