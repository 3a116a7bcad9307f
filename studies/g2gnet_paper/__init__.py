"""The reproduction of the G2GNet paper (arXiv 2508.14140): RESULTS.md from ``results/``.

    python -m studies.g2gnet_paper results RESULTS.md
"""
