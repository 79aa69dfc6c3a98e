"""The evidence campaign's bookkeeping (issue 10): the rules that chose LGA's default reading, their
history, and campaign.md. Not part of the installed package; it reads the result files under
results/ (see README.md)."""
