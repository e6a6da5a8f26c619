# Locked: the data and the evaluation would live here. Ratchet hashes this file around every
# experiment; a change voids the experiment.
