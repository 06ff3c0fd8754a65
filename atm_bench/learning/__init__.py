"""Learning machinery shared by every method (ATM, the baselines, the reference agents): the
training loop and checkpoints (`training`), demo references and frame reading with the one image
conversion training and acting share (`frames`), augmentation (`augment`) and instruction
embeddings (`language`). Nothing here knows about a particular method."""
