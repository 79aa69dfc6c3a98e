"""The application layer: what the command line needs around the domain packages.

Reading requests a user writes by hand (user_input), editing and checking them (edit_session),
the locate command's job and the cached golden layer for ``--layer auto`` (locate_job), and
showing layer scores (render). Domain packages (models, data, editing, evaluate, locate) never
import from here; tests/test_layers.py holds that.
"""
