"""Files written so that nothing is lost and nothing the user owns is replaced; one module a concept:

- ``atomic``: a temporary file beside the target, flushed and renamed over it (``atomic_path``,
  ``atomic_write_bytes/text/json``); what a killed writer left is removed by the next write.
- ``outputs``: output paths checked before the work (``check_output_path``, ``check_output_folder``,
  ``check_not_input``), which files and folders are our own earlier output (``record_output``,
  ``file_is_ours``), and ``staged_folder`` for model folders.
- ``locks``: one writer per run folder (``run_lock``).
- ``digests``: what a run or a cache entry was made from (``file_digest``, ``settings_digest``,
  ``check_unchanged``).
- ``jsonfiles``: JSON and JSON Lines files that name themselves when broken (``read_json``,
  ``read_json_lines``, ``append_json_line``).
- ``tensors``: why a safetensors file is damaged (``safetensors_problem``).

Each module imports only ``goldenlayers.errors`` and its siblings, so every package may use them.
"""
