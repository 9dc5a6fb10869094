"""The mutation targets (tests/mutation.py runs them): each names its file (or files), the functions in it that hold
the algorithm, and the few fast tests that check them. tests/test_mutation_targets.py checks that every function and
test named here still exists."""

from dataclasses import dataclass


@dataclass(frozen=True)
class Target:
    path: str | tuple[str, ...]  # a file, or the files the functions are in
    functions: tuple[str, ...]  # qualified names: "gram", "ImagePool.query"
    tests: tuple[str, ...]  # pytest arguments: files, or file::test

    @property
    def paths(self) -> tuple[str, ...]:
        return (self.path,) if isinstance(self.path, str) else self.path



# the inference commands' tests (test_commands.py until 2026-12-01): their entry points, dl2-classify, the options
# they share
COMMAND_TESTS = ("tests/test_console_scripts.py", "tests/test_darknet_inference.py",
                 "tests/test_command_options.py")



# the tests of train.py's hooks called directly with small fakes, milliseconds each (test_stop_and_resume.py until
# 2026-12-01)
HOOK_TESTS = ("tests/test_saved_progress.py", "tests/test_save_on_stop.py", "tests/test_stop_under_ddp.py",
              "tests/test_requeue_signal.py",
              *(f"tests/test_checkpoint_checks.py::test_{name}" for name in (
                  "an_exported_file_is_refused_as_a_fits_checkpoint_naming_init_from",
                  "a_checkpoint_of_the_same_net_is_returned_for_a_resume_and_for_init_from",
                  "a_checkpoint_of_other_shapes_names_the_weight_and_both_shapes",
                  "a_checkpoint_outside_a_run_folder_names_the_options_it_was_trained_with_not_a_missing_config",
                  "hyper_parameters_json_cannot_write_neither_stop_a_checkpoint_check_nor_its_refusal",
                  "numpy_and_torch_hyper_parameters_are_named_by_value_not_by_type",
                  "the_fix_for_a_cyclegan_of_another_width_names_its_width_not_its_training_options",
                  "init_from_and_a_resume_refuse_weights_missing_or_extra",
                  "a_resume_with_another_cyclegan_depth_is_refused_with_its_runs_config_not_a_load_traceback",
                  "the_fix_for_a_wgan_of_another_image_size_names_the_data_size_too",
                  "a_checkpoint_of_another_class_names_it_and_the_system_to_use",
                  "a_fit_from_an_exported_file_is_refused_and_init_from_takes_it",
                  "a_native_subcommand_takes_a_checkpoint_of_its_configs_class",
                  "a_native_subcommand_refuses_another_class_naming_the_config_to_give")))



TARGETS = {
    "training_phase": Target("callbacks/training_phase.py",
                             ("annealed", "decay_and_power", "TrainingPhase.__post_init__", "TrainingPhase._range",
                              "TrainingPhase.lr_at",
                              "TrainingPhase.momentum_at", "one_cycle", "sgdr", "triangle", "one_cycle_cos",
                              "flat_cos"),
                             ("tests/test_phase_math.py", "tests/test_phase_cycles.py",
                              "tests/test_phase_definitions.py", "tests/test_phase_scheduler.py", "-k",
                              "test_phase_math or one_cycle_is or sgdr_is or decay_given or bad_phase or alike"
                              " or triangle or fastai or pct_start_0 or beta_outside or share_of_the_cycle"
                              " or lr_decay_no or decay_pair_that or positional_order or partial or sgdr_needs")),
    "phase_scheduler": Target("callbacks/phase_scheduler.py",
                              ("TrainingPhaseScheduler.phase_ends", "TrainingPhaseScheduler.steps_per_epoch",
                               "TrainingPhaseScheduler.locate", "TrainingPhaseScheduler.build_recipe",
                               "TrainingPhaseScheduler.on_train_start", "TrainingPhaseScheduler.on_train_batch_end",
                               "TrainingPhaseScheduler._apply", "TrainingPhaseScheduler._enter", "set_momentum",
                               "set_beta", "build_optimizer", "TrainingPhaseScheduler._start",
                               "TrainingPhaseScheduler.setup", "TrainingPhaseScheduler.plan",
                               "TrainingPhaseScheduler.check_phases", "check_data_attribute"),
                              ("tests/test_phase_math.py", "tests/test_phase_scheduler.py",
                               "tests/test_phase_resume.py", "tests/test_phase_cycles.py",
                               "tests/test_phase_definitions.py", "-k",
                               "test_phase_math or accumulation or rmsprop or alike or switches or fractional or manual"
                               " or resume or one_cycle_recipe or swa or refuses or follow_the_seed_formula or beta"
                               " or fastai or save_cycles or recipe_takes or sgdr_keeps or fitted_twice"
                               " or keeps_the_cycle or later_phases or exempt_groups or no_step or per_phase_data"
                               " or fresh_fit")),
    "lr_finder": Target("callbacks/lr_finder.py", ("DebiasedLossRecord.on_train_batch_end", "debiased_loss_record",
                                                   "early_end_not_called_divergence", "steepest_log_descent"),
                        ("tests/test_lr_finder.py",)),
    "augment": Target("datamodules/augment.py",
                      ("mirrored", "random_crop", "random_flip", "normalize", "channel_stats"),  # normalize's stats
                      ("tests/test_augment.py",)),
    "cifar10_batches": Target("datamodules/cifar10.py", ("CIFAR10DataModule.on_after_batch_transfer",),
                              ("tests/test_cifar10_batches.py",)),
    "cifar10_cache": Target("datamodules/cifar10.py",
                            ("folder_fingerprint", "cached_folders", "CIFAR10DataModule.prepare_data",
                             "CIFAR10DataModule.load"),
                            ("tests/test_cifar10_data.py", "-k", "cache or decoded or changed or damaged or cannot_hold"
                             " or once or folder_layout or official")),
    "classify": Target(("lightning_modules/darknet_classify.py", "lightning_modules/darknet_classifier.py"),
                       ("classify", "write_csv", "DarknetClassifier.on_save_checkpoint",
                        "DarknetClassifier.on_load_checkpoint"),
                       (*COMMAND_TESTS, "-k", "classify or class_names or checkpoint_at_another_image_size")),
    "inference": Target("lightning_modules/inference.py", ("read_checkpoint", "saved_class", "load_checkpoint"),
                        (*COMMAND_TESTS, "-k", "wrong_checkpoint or classify_gives or traceback")),
    "darknet": Target("lightning_modules/nets/darknet.py",
                      ("conv_layer", "ResLayer.__init__", "ResLayer.forward", "Darknet.__init__"),
                      ("tests/test_darknet_core.py", "tests/test_darknet.py", "tests/test_darknet_net_options.py")),
    "wgan": Target("lightning_modules/wgan.py",
                   ("WGAN.d_iters", "WGAN.training_step", "WGAN.out_of_batches", "WGAN.critic_step",
                    "WGAN.clip_critic_weights", "WGAN.penalty", "WGAN.generator_step"),
                   ("tests/test_wgan_steps.py", "tests/test_wgan.py", "-k",
                    "test_wgan_steps or penalty_matches or iteration_counts or max_steps_counts or sample_grid"
                    " or max_steps_stop")),
    "cyclegan": Target("lightning_modules/cyclegan.py",
                       ("gan_loss", "cycle_loss", "identity_loss", "linear_decay", "ImagePool.query",
                        "CycleGAN.generator_losses", "CycleGAN.discriminator_loss", "CycleGAN.training_step"),
                       ("tests/test_cyclegan_steps.py", "tests/test_cyclegan.py", "-k",
                        "formula or halved or pool or linear or one_101th or steps")),
    "style_transfer": Target("lightning_modules/style_transfer.py",
                             ("gram", "content_loss", "style_loss", "style_layer_losses"),
                             ("tests/test_style_losses.py", "tests/test_style.py", "-k",
                              "test_style_losses or gram")),
    "names": Target("datamodules/decode.py", ("output_names",), ("tests/test_translate.py", "-k", "output_names")),
    "reference_generator": Target(("lightning_modules/cyclegan_reference.py",
                                   "lightning_modules/nets/cyclegan.py"),
                                  ("reference_generator", "pad_to_multiple", "translated"),
                                  ("tests/test_translate.py", "-k", "reference or neither or smaller or padded")),
    "vgg_layers": Target("lightning_modules/nets/vgg.py", ("block_ends", "relu_layers", "load_vgg", "fits"),
                         ("tests/test_style.py", "tests/test_style_cli.py", "-k",
                          "relu or block_ends or gatys or unknown_layer or weights_file or local_weights"
                          " or torch_cache")),
    "wgan_reference": Target(("lightning_modules/wgan_reference.py", "lightning_modules/wgan_generate.py"),
                             ("reference_generator", "reference_mlp_generator",
                                                        "load_generator"),
                             ("tests/test_wgan_reference.py",)),
    "style_options": Target("lightning_modules/style_transfer.py",
                            ("total_variation", "original_colors", "StyleTransfer.training_step",
                             "StyleTransfer.on_train_end"),
                            ("tests/test_style_options.py", "tests/test_style.py", "tests/test_progress.py", "-k",
                             "test_style_options or seeds_plain or single_style_layer or each_layers_share"
                             " or listed_twice")),
    "style_pyramid": Target("lightning_modules/style_transfer.py",
                            ("resized", "StyleTransfer.level_size", "StyleTransfer.on_train_batch_start",
                             "StyleTransfer.targets", "StyleTransfer.setup"),
                            ("tests/test_style_pyramid.py",)),
    "style_data": Target("datamodules/style.py", ("scale_match", "resize_crop", "StyleTransferDataModule.setup"),
                         ("tests/test_style_data.py",)),
    "unpaired": Target("datamodules/unpaired.py",
                       ("image_files", "load_for_crop", "load_readable", "UnpairedImages.__getitem__",
                        "UnpairedImages.augment", "UnpairedImageDataModule.check", "UnpairedImageDataModule.setup",
                        "UnpairedImageDataModule.train_dataloader"),
                       ("tests/test_unpaired_data.py", "tests/test_cyclegan_cli.py", "-m", "not slow", "-k",
                        "test_unpaired_data or without_test_folders")),
    "translate": Target(("lightning_modules/cyclegan_translate.py", "lightning_modules/cyclegan_reference.py"),
                        ("translate", "translate_output", "reference_model",
                                                          "reference_partner", "partner_file"),
                        ("tests/test_translate.py", "tests/test_cyclegan_cli.py", "-k", "translate")),
    "interpret": Target("lightning_modules/darknet_classifier.py",
                        ("DarknetClassifier.test_step", "DarknetClassifier.keep_worst",
                         "DarknetClassifier.on_test_epoch_end", "DarknetClassifier.gather_worst"),
                        ("tests/test_darknet_interpret.py", "tests/test_data_ddp.py", "-k",
                         "interpret or confusion or darknet_test_loss")),
    "lbfgs": Target("lightning_modules/lbfgs.py",
                    ("rowdot", "BatchLBFGS.step", "BatchLBFGS._remember", "BatchLBFGS._direction"),
                    ("tests/test_lbfgs_core.py", "tests/test_style_lbfgs.py")),
    "wgan_checks": Target("lightning_modules/wgan.py", ("check_schedule",), ("tests/test_value_checks.py",)),
    "style_blend": Target("lightning_modules/style_transfer.py", ("StyleTransfer.blend",),
                          ("tests/test_style_options.py", "-k", "blend")),
    "devices": Target("lightning_modules/inference.py", ("check_device",),
                      ("tests/test_command_options.py", "-k", "device_this or two_gpus")),
    "resume": Target(("callbacks/saving.py", "callbacks/checkpoints.py"),
                     ("EpochEndSave.on_train_epoch_end", "init_from"),
                     ("tests/test_stop_signals.py", "tests/test_last_ckpt.py", "tests/test_resume_steps.py",
                      "tests/test_init_from.py", "tests/test_checkpoint_checks.py", "-m", "not slow", "-k",
                      "each_epoch_end or every_remaining_epoch or init_from or mid_epoch")),
    # callbacks/resume.py (in train.py before 2026-11-30: its on_train_start in "resume", its on_load_checkpoint in
    # "stop_and_resume", with their tests)
    "max_steps_resume": Target("callbacks/resume.py",
                               ("MaxStepsResume.on_train_start", "MaxStepsResume.on_load_checkpoint",
                                "SeedPerRankAndStep.on_train_start"),
                               ("tests/test_stop_signals.py", "tests/test_resume_order.py", "tests/test_last_ckpt.py",
                                "tests/test_resume_steps.py", "tests/test_saved_progress.py",
                                "tests/test_max_steps_resume.py", "-m", "not slow", "-k",
                                "each_epoch_end or every_remaining_epoch or mid_epoch or not_yet_processed"
                                " or plain_trainers_resume or own_random")),
    "stopped_validation": Target("callbacks/resume.py", ("RerunStoppedValidation.on_load_checkpoint",
                                                         "RerunStoppedValidation.on_train_start"),
                                 ("tests/test_validation_stop.py", "tests/test_resume_order.py", "-m", "not slow",
                                  "-k", "part_way or validation_saves or last_validation or own_random"
                                  " or read_as_such")),
    "restart": Target("datamodules/workers.py", ("restart_position", "restart_skip", "ResumableSampler.__init__",
                                                 "ResumableSampler.__iter__", "LateLoader.__iter__"),
                      ("tests/test_resume_order.py", "tests/test_unpaired_data.py", "-k",
                       "rest_of_that_epochs or disjoint_halves")),
    # where a run writes and which checkpoint `--ckpt_path last` means (a wrong choice overwrites a user's run); the
    # tests as node ids, fastest first (pytest keeps that order, -x stops at the first failure)
    "run_folders": Target(("callbacks/run_folder.py", "callbacks/run_checkpoint.py", "callbacks/run_lifecycle.py",
                           "callbacks/saving.py", "callbacks/configs.py"),
                          ("read_run", "newest_last_checkpoint", "check_run_owner", "new_time_stamped",
                           "slurm_restart", "resume_own_newest", "check_not_earlier",
                           "global_rank_zero", "launched_by_lightning", "named_run", "slurm_folder", "run_root",
                           "model_class_of", "resolve_checkpoint", "fit_folder", "evaluation_folder", "prepare_run",
                           "make_run_folder", "discard_fresh_runs", "claim_time_stamped", "missing_folders"),
                          tuple(f"tests/test_{file}.py::test_{name}" for file, name in (
                              # the functions called directly: milliseconds
                              ("run_folder_choices", "last_is_the_run_started_last_not_the_last_name"),
                              ("run_folder_choices",
                               "last_takes_a_run_json_without_trained_from_a_train_py_before_that_key"),
                              ("run_folder_choices",
                               "last_names_the_newest_folder_without_run_json_and_the_newest_older_run"),
                              ("run_folder_choices", "run_name_without_a_folder_or_a_checkpoint_says_what_to_do"),
                              ("run_folder_choices", "a_new_time_stamp_takes_the_first_free_suffix"),
                              ("run_folder_choices", "a_launched_evaluation_rank_reads_rank_0s_checkpoint"),
                              ("slurm_folders",
                               "last_in_a_requeued_slurm_job_is_its_own_folders_and_in_a_new_job_the_newest"),
                              ("slurm_folders",
                               "a_requeued_slurm_job_resumes_its_last_ckpt_unless_lightning_saved_an_hpc_checkpoint"),
                              ("slurm_folders",
                               "a_requeue_of_a_job_given_a_checkpoint_carries_on_from_the_jobs_own_newest_state"),
                              ("slurm_folders", "a_named_run_in_a_slurm_job_is_taken_over_only_by_a_requeue"),
                              ("run_folder_choices", "a_named_run_of_a_train_py_before_trained_is_not_taken_over"),
                              ("slurm_folders", "a_second_slurm_task_follows_task_0_into_the_folder_it_made"),
                              ("run_folder_choices",
                               "a_checkpoint_of_a_folder_without_run_json_resumes_in_that_folder"),
                              ("prepare_run", "prepare_run_points_checkpoints_and_the_wandb_run_at_the_run_folder"),
                              ("prepare_run", "prepare_run_keeps_the_wandb_options_given"),
                              ("prepare_run", "prepare_run_on_a_rank_other_than_0_creates_no_folder"),
                              ("run_folder_choices",
                               "last_takes_a_run_json_without_a_start_time_as_older_than_any_started_run"),
                              ("slurm_folders",
                               "a_requeue_takes_last_ckpt_over_an_hpc_checkpoint_of_its_step_and_a_torn_file_only"
                               "_alone"),
                              ("prepare_run", "wandb_mode_offline_shows_in_the_loggers_config"),
                              ("prepare_run", "enable_checkpointing_false_drops_the_configs_checkpoint_callback_alone"),
                              ("refused_run_cleanup",
                               "a_refused_run_discards_the_folders_made_for_it_and_ends_its_wandb_run"),
                              ("refused_run_cleanup",
                               "a_refused_runs_folder_that_cannot_be_removed_leaves_the_refusal_as_it_was"),
                              ("slurm_folders",
                               "a_srun_task_with_a_leftover_run_name_is_not_taken_for_a_launched_rank"),
                              ("lr_find_cli", "lr_find_refuses_a_checkpoint"),
                              ("run_folders", "a_new_run_never_reuses_an_existing_folder"),
                              ("run_folders", "a_slurm_requeue_carries_on_in_its_folder_from_last"),
                              ("run_folders", "a_named_run_that_stopped_before_training_can_be_retried_under_its_name"),
                              ("run_folders", "last_passes_over_a_newer_run_that_stopped_before_training"),
                              ("run_folders", "last_skips_the_newer_run_of_another_system_sharing_the_root"),
                              ("native_subcommands",
                               "native_evaluations_refuse_a_missing_checkpoint_and_a_run_name_that_is_no_training_run"),
                              ("native_subcommands",
                               "native_test_in_a_slurm_job_that_trained_writes_beside_the_jobs_run"),
                              ("run_folders",
                               "last_refuses_a_newer_run_without_checkpoint_and_leaves_the_older_one_alone"),
                              ("native_subcommands",
                               "native_test_subcommand_writes_its_own_folder_not_the_checkpoints_run"),
                              ("refused_before_training", "a_refused_run_leaves_nothing_behind"),
                              ("refused_before_training",
                               "a_refusal_keeps_the_folder_of_a_resumed_run_and_of_one_that_began_training"),
                              ("train_job", "jobs_started_together_each_keep_the_time_stamp_they_chose"),
                              ("run_folder_choices",
                               "a_time_stamp_another_job_took_after_its_choice_is_claimed_under_the_next_name"),
                              ("run_locks", "a_run_that_made_a_folder_another_process_locked_first_leaves_it_alone"),
                              ("run_locks", "a_refused_run_removes_its_folder_under_its_lock")))),
    "logging": Target("callbacks/progress.py",
                      ("logging_step", "last_batch", "WriteLoggingSteps.on_train_start",
                       "WriteLoggingSteps.on_train_batch_end"),
                      ("tests/test_progress.py", "-k", "logging_step or loggers_get or log_every_n_steps_0")),
    "workers": Target("datamodules/workers.py",
                      ("max_workers", "outlive_stop_signals", "_end_on_next_sigterm", "loader"),
                      ("tests/test_workers.py", "tests/test_image_folder.py", "-k", "test_workers or capped")),
    "darknet_recipe": Target("lightning_modules/darknet_classifier.py",
                             ("tta_views", "tta_average", "DarknetClassifier.setup",
                              "DarknetClassifier.training_sample",
                              "DarknetClassifier.forward", "DarknetClassifier.loss", "DarknetClassifier._evaluate",
                              "DarknetClassifier.parameter_groups", "DarknetClassifier.configure_optimizers"),
                             ("tests/test_darknet_net_options.py", "tests/test_darknet_optimizer_options.py",
                              "tests/test_darknet_step_options.py",
                              "tests/test_value_checks.py::test_one_class_data_is_refused_without_advising_num_classes_1",
                              "tests/test_phase_scheduler.py::test_one_weight_decay_keeps_the_models_exempt_groups_and"
                              "_scaled_ones",
                              "-k", "tta or whitening_is_set or groups or bn_bias or exempt_groups"
                              " or single_group or nesterov or label_smoothing or channels_last or compiled or setup"
                              " or whitening_sample or one_cycle or one_class_data")),
    "darknet_nets": Target("lightning_modules/nets/darknet.py",
                           ("batchnorm_stats_kept", "downsample_layer", "whitening_layer", "init_whitening",
                            "Darknet.whitening", "Darknet.forward"),
                           ("tests/test_darknet_core.py", "tests/test_darknet.py", "tests/test_darknet_net_options.py",
                            "tests/test_darknet_optimizer_options.py", "-k",
                            "test_darknet_core or test_darknet.py or pool or strides or bad_net or whitening"
                            " or airbench or frozen")),
    "cifar10_order": Target("datamodules/cifar10.py",
                            ("TensorBatches.set_epoch", "TensorBatches._order", "TensorBatches.__len__",
                             "TensorBatches.__iter__", "CIFAR10DataModule.train_dataloader"),
                            ("tests/test_cifar10_data.py", "tests/test_darknet_step_options.py",
                             "tests/test_resume_order.py", "tests/test_overfit_batches.py",
                             "-k", "overfitting_tensor_batches or batches_reshuffle or evaluation_batches_cover"
                             " or batch_larger or alternate"
                             " or tensor_batches or on_device or (rest_of_that_epochs and darknet)")),
    # 2026-11-29: SWA beside the phases, an inference command's checkpoint argument, output paths and exit status
    "swa": Target("callbacks/phase_scheduler.py",
                  ("swa_first_epoch", "TrainingPhaseScheduler.build_recipe", "TrainingPhaseScheduler.on_train_start"),
                  ("tests/test_phase_cycles.py", "tests/test_phase_scheduler.py", "-k",
                   "swa or one_cycle_recipe or recipe_takes or fractional"
                   " or accumulation or manual or sgdr_keeps or save_cycles")),
    "checkpoint_file": Target("lightning_modules/inference.py", ("checkpoint_file",),
                              ("tests/test_darknet_inference.py", "tests/test_command_options.py", "-k",
                               "run_folder_or_last or gan_commands_too")),
    "output_paths": Target("callbacks/errors.py",
                           ("check_output_folder", "check_output_file", "refuse_a_file_on_the_way",
                            "refuse_unexpanded_home", "report_partial_failure", "one_line_errors"),
                           (*COMMAND_TESTS, "tests/test_translate.py", "-k", "dangling or file_blocks"
                            " or unreadable or generate_writes or wrong_checkpoint or tilde or ctrl_c_in_a_command")),
    "broken_pipe": Target("callbacks/errors.py", ("stdout_reader_gone", "one_line_errors"),
                          (*COMMAND_TESTS, "tests/test_translate.py", "-k", "cut_short or ctrl_c_in_a_command"
                           " or refuses_is_one_line or wrong_checkpoint or unreadable or reader_gone")),
    # 2026-12-02: the other ranks of a run whose one process ended (a user's error, a stop), the runs in training
    "peer_gone": Target("callbacks/errors.py", ("peer_gone", "process_rank", "one_line_errors"),
                        (*COMMAND_TESTS, "tests/test_translate.py", "tests/test_one_line_errors.py", "-k",
                         "cut_short or ctrl_c_in_a_command or refuses_is_one_line or wrong_checkpoint or unreadable"
                         " or reader_gone or collective_failing")),
    # 2026-12-02's walkthroughs: the other projects' habits named (a list flag twice, a flag without its group,
    # neural-style's comma lists, a data set's root with its splits, fastai's predict)
    "user_habits": Target(("callbacks/errors.py", "lightning_modules/style_transfer.py", "datamodules/image_folder.py",
                           "lightning_modules/darknet_classify.py"),
                          ("refuse_repeated_lists", "ungrouped_option", "close_option", "comma_list",
                           "warn_split_folders", "predict", "as_image", "squared", "class_probabilities"),
                          ("tests/test_style_commands.py", "tests/test_one_line_errors.py",
                           "tests/test_image_folder.py", "tests/test_darknet_inference.py",
                           "tests/test_console_scripts.py", "-k",
                           "comma_separated or given_twice or bad_value_from_the_command_line or split_folders"
                           " or torchvisions or predict or unknown_flag or classify_flip or resizes_other_sizes")),
    "run_in_training": Target(("callbacks/run_checkpoint.py", "callbacks/run_lifecycle.py"),
                              ("refuse_in_training", "lock_holder"),
                              ("tests/test_run_locks.py", "-k",
                               "first_epoch or without_locks or not_resumed_alongside")),
    "run_guards": Target(("callbacks/run_checkpoint.py", "callbacks/run_lifecycle.py", "callbacks/checkpoints.py"),
                         ("slurm_restart", "resume_own_newest", "check_not_earlier", "checkpoint_step", "hold_run_lock",
                          "release_run_locks"),
                         tuple(f"tests/test_{file}.py::test_{name}" for file, name in (
                             ("slurm_folders",
                              "a_requeue_of_a_job_given_a_checkpoint_carries_on_from_the_jobs_own_newest_state"),
                             ("slurm_folders",
                              "a_requeued_slurm_job_resumes_its_last_ckpt_unless_lightning_saved_an_hpc_checkpoint"),
                             ("run_locks", "a_requeued_job_waits_out_a_stale_lock_then_goes_on"),
                             ("run_locks", "a_run_another_process_is_training_is_not_resumed_alongside_it"),
                             ("run_locks", "a_filesystem_without_locks_is_said"),
                             ("run_folders",
                              "an_earlier_checkpoint_of_a_run_is_not_carried_on_in_that_run_but_in_a_new_one"),
                             ("checkpoint_checks", "a_checkpoints_step_is_read_from_either_of_torchs_formats"),
                             # resume_own_newest's choice among last.ckpt, hpc and torn files (run_folders' tests)
                             ("slurm_folders",
                              "a_requeue_takes_last_ckpt_over_an_hpc_checkpoint_of_its_step_and_a_torn_file_only_alone"),
                             ("slurm_folders",
                              "a_requeue_after_a_crash_in_the_relink_of_last_ckpt_carries_on_from_the_runs_save")))),
    "lookahead": Target("callbacks/lookahead.py",
                        ("Lookahead.__init__", "Lookahead.on_train_start", "Lookahead._update",
                         "Lookahead.on_train_batch_end", "Lookahead.on_train_end", "Lookahead._finish",
                         "Lookahead.state_dict", "Lookahead.load_state_dict"),
                        ("tests/test_darknet_optimizer_options.py", "-k", "lookahead")),
    # dl2-export: which system a checkpoint is, what a weights-only file keeps, the reference projects' key names; the
    # tests that need no trained CycleGAN first (its fixture trains one for 6 s). Run it under `ulimit -v 8000000`:
    # dcgan_g_names' `size / 2` mutant loops for ever, filling memory faster than mutmut's timeout (a MemoryError then)
    "export": Target("lightning_modules/export.py",
                     ("system_class", "source_checkpoint", "weights_only", "restore_left_out", "junyanz_resnet_names",
                      "dcgan_g_names", "prefixed", "reference_files", "export", "exported_programs",
                      "Classify.__init__", "Classify.forward"),
                     tuple(f"tests/test_export.py::test_{name}" for name in (
                         "a_checkpoint_of_a_class_this_project_does_not_know_is_refused",
                         "an_odd_ngf_is_refused_in_the_references_format_whose_dcgan_g_has_other_widths",
                         "reference_files_of_a_checkpoint_without_its_sizes_are_those_of_the_systems_defaults",
                         "last_among_runs_of_three_systems_names_them_and_a_path_is_read_as_given",
                         "an_existing_output_file_is_replaced",
                         "the_wassersteingan_file_carries_dcgan_gs_key_names_and_generates_as_ours",
                         "the_wassersteingan_files_of_its_nobn_and_mlp_generators",
                         "a_wgan_export_is_its_generator_and_generates_the_checkpoints_images",
                         "a_darknet_export_classifies_as_its_checkpoint",
                         "mistakes_are_one_line_and_leave_the_checkpoint_as_it_was",
                         "a_cyclegan_export_translates_as_its_checkpoint_without_the_training_state",
                         "junyanz_files_carry_its_key_names_and_translate_as_our_generators",
                         "train_refuses_an_export_as_ckpt_path_and_starts_from_its_generators",
                         "last_is_the_newest_run_of_the_one_system_that_has_runs",
                         "a_darknet_exports_as_a_program_of_torch_alone_with_its_tta_normalisation_and_classes",
                         "a_wgan_exports_its_generator_and_a_cyclegan_a_program_per_direction",
                         "a_darknet_checkpoint_that_keeps_no_size_exports_at_cifar10s_32"))),
    # data appearing under data/: the checksum, the archive's paths, the lock, the temporary folder and its rename
    "download": Target("datamodules/download.py",
                       ("download", "unpack", "extract_tar", "_missing_parents", "_alive", "_remove_stale", "prepare"),
                       ("tests/test_download.py", "tests/test_cifar10_data.py", "tests/test_unpaired_data.py", "-k",
                        "download or filter or outside or two_processes or killed or zip or wrong_image_counts")),
    # image grids and figures in <run folder>/images and on W&B, and the note about an earlier run's PNGs; the tests
    # as node ids, fastest first
    "images": Target("callbacks/images.py",
                     ("save_png", "note_earlier_images", "labelled", "log_image_grid", "log_to_loggers", "log_figure"),
                     ("tests/test_images.py",
                      "tests/test_wgan.py::test_the_first_real_batch_is_shown_once_as_the_references_real_samples",
                      "tests/test_translate.py::test_unreadable_images_are_listed_and_the_others_translated",
                      "tests/test_darknet_interpret.py::test_confusion_matrix_per_class_accuracy_and_top_losses",
                      "tests/test_darknet_interpret.py::test_interpret_false_writes_nothing_and_logs_no_class_accuracy",
                      "tests/test_console_scripts.py::test_console_script_generate_writes_the_samples",
                      "tests/test_cyclegan.py::test_visual_grid_has_six_images_per_row_or_eight_with_the_identity_images",
                      "tests/test_style_options.py::test_the_side_by_side_shows_content_the_style_at_the_contents_size"
                      "_and_the_result",
                      "tests/test_image_log_steps.py",
                      "tests/test_tensorboard.py::test_wgan_samples_go_to_a_tensorboard_logger_at_their_batchs_step")),
    # a checkpoint or JSON file written beside its target and renamed over it: a crash keeps the previous file
    "checkpoint_io": Target("callbacks/checkpoint_io.py",
                            ("AtomicCheckpointIO.save_checkpoint", "replaced", "remove_stale_temporaries",
                             "write_json"),
                            ("tests/test_checkpoint_io.py",
                             "tests/test_export.py::test_an_existing_output_file_is_replaced")),
    # the Frechet distance's feature nets and its bookkeeping in training (val/fid: the real statistics kept, fakes
    # reset, the sanity check forgotten) and in dl2-wgan-fid; the formula itself is torchmetrics'. Without the DDP
    # test (its shared two-process job takes 17 s)
    "fid": Target("lightning_modules/fid.py",
                  ("DarknetFeatures.__init__", "DarknetFeatures.train", "DarknetFeatures.forward",
                   "InceptionFeatures.__init__", "InceptionFeatures.forward", "feature_file", "feature_extractor",
                   "frechet_metric", "to_metric_device", "add_images", "forget_everything",
                   *(f"FrechetValidation.{name}" for name in ("__init__", "off", "check", "release",
                                                              "refuse_validate_when_off", "build", "add", "compute"))),
                  ("tests/test_wgan_fid.py", "tests/test_gan_fid.py", "-k", "not ddp_ranks")),
    "wgan_fid": Target("lightning_modules/wgan_fid.py", ("real_batches", "fid"),
                       ("tests/test_wgan_fid.py::test_fid_command_compares_a_checkpoint_with_an_image_folder",
                        "tests/test_wgan_fid.py::test_fid_command_takes_two_images_and_refuses_a_folder_of_one",
                        "tests/test_wgan_fid.py::test_fid_command_leaves_an_unreadable_real_image_out_rather_than"
                        "_counting_a_stand_in_twice",
                        "tests/test_wgan_reference.py::test_fid_reads_a_reference_generator_file",
                        "tests/test_wgan_reference.py::test_fid_of_a_reference_mlp_generator_of_a_size_no_dcgan_takes",
                        "tests/test_console_scripts.py::test_fid_needs_two_samples_for_a_covariance",
                        *(f"tests/test_console_scripts.py::test_a_count_below_one_is_refused_in_one_line[wgan_fid---{option}]"
                          for option in ("num_samples", "batch_size")))),
    # the GAN architectures: WGAN's DCGAN and MLP nets (martinarjovsky/WassersteinGAN's models), CycleGAN's ResNet
    # generator and 70x70 PatchGAN (junyanz/pytorch-CycleGAN-and-pix2pix's networks.py)
    "dcgan_nets": Target("lightning_modules/nets/dcgan.py",
                         ("check_isize", "nearest_power_of_two", "ConvBlock", "DeconvBlock", "critic", "generator",
                          "linear_relu", "mlp_generator", "mlp_critic", "init_dcgan_"),
                         ("tests/test_wgan_nets.py", "tests/test_wgan_reference.py", "-k", "not fid")),
    "cyclegan_nets": Target("lightning_modules/nets/cyclegan.py",
                            ("conv_norm_relu", "upsample_norm_relu", "ResBlock.__init__", "ResBlock.forward",
                             "resnet_generator", "patch_block", "patch_discriminator", "init_cyclegan_"),
                            ("tests/test_cyclegan_nets.py", "tests/test_translate.py", "-k",
                             "test_cyclegan_nets or reference_generator_file")),
    # the WGAN's real images: a folder tree, the seed's CSV list, an LSUN lmdb, CIFAR-10's batches; the sample, the
    # square crops, the batches and the fixed validation sample (its one fit test: val/fid against the formula)
    "image_folder": Target("datamodules/image_folder.py",
                           ("square", "folder_files", "csv_files", "write_file_list", "ImageFiles.__getitem__",
                            "ReadableImageFiles.__getitem__", "each_image_once", "TensorImages.__getitem__",
                            "LMDBImages.__init__", "LMDBImages.open",
                            "LMDBImages.__getstate__", "LMDBImages.__getitem__", "ImageFolderDataModule.__init__",
                            "ImageFolderDataModule.root", "ImageFolderDataModule.cifar10_root",
                            "ImageFolderDataModule.source", "ImageFolderDataModule.check",
                            "ImageFolderDataModule.prepare_data", "ImageFolderDataModule.missing",
                            "ImageFolderDataModule.build_dataset", "ImageFolderDataModule.sample",
                            "ImageFolderDataModule.setup", "ImageFolderDataModule.train_dataloader",
                            "ImageFolderDataModule.val_dataloader", "ImageFolderDataModule.on_after_batch_transfer"),
                           ("tests/test_image_folder.py", "tests/test_gan_fid.py::test_wgan_validation_logs_the"
                            "_formulas_distance_between_fixed_noise_and_the_real_sample",
                            "tests/test_gan_fid.py::test_wgan_validation_leaves_an_unreadable_real_image_out_rather"
                            "_than_counting_a_stand_in_twice",
                            "tests/test_prepare_data.py::test_the_data_is_prepared_on_every_node[image_folder]")),
    # the training signal on screen: the bar's metrics read once per logging interval, the plain lines off a terminal
    # (interval, metrics shown, numbers, validation line), train.py's bar and its quieting of Lightning's tips
    "progress_bar": Target("callbacks/progress.py",
                           ("ProgressBar.__init__", "ProgressBar.disable", "ProgressBar.enable", "ProgressBar.interval",
                            "ProgressBar.refresh", "ProgressBar.get_metrics", "ProgressBar.on_train_start",
                            "ProgressBar.on_train_batch_end", "ProgressBar.print_line",
                            "ProgressBar.on_validation_end", "format_number", "add_progress_bar", "_DropInfo.filter",
                            "quiet"),
                           ("tests/test_progress_bar.py", "tests/test_progress.py", "-k",
                            "test_progress_bar or refresh or named_metrics or plain_lines or host_read"
                            " or train_py_job_prints or without_a_bar or each_system or leaves_out_the_first")),
    # plain ddp to the GANs' documented strategy name, their refusal of DDP without unused-parameter detection, the
    # process group destroyed at exit
    "run_config": Target(("callbacks/run_config.py", "callbacks/cli.py", "callbacks/wandb_run.py",
                          "callbacks/run_lifecycle.py", "callbacks/checkpoints.py"),
                         ("LogConfig.setup", "LogConfig.on_fit_start", "LogConfig.write", "remove_wandb_run",
                          "discard_refused_resume", "end_wandb_run", "resume_config_hint", "resume_as_begun",
                          "CLI.instantiate_classes"),
                         ("tests/test_checkpoint_checks.py", "tests/test_refused_run_cleanup.py",
                          "tests/test_init_from.py", "tests/test_train_job.py", "tests/test_run_config_yaml.py",
                          "tests/test_native_subcommands.py", "tests/test_refused_before_training.py",
                          "tests/test_style_cli.py", "tests/test_tensorboard.py", "-k",
                          "removing_a_wandb or discards_the_folders or config_yaml_goes or leaves_nothing_behind"
                          " or runs_config_yaml or writes_results or refused_resume"
                          " or names_the_runs_config or options_than_the_runs or native_fits_refused"
                          " or new_run_from_the_weights_alone or test_tensorboard")),
    "strategy": Target("callbacks/strategy.py",
                       ("documented_ddp_strategy", "require_unused_parameter_detection",
                        "destroy_process_group_at_exit", "_destroy_process_group"),
                       ("tests/test_strategy.py",)),
    # CIFAR-10's pixels and labels as loaded (the python batches, the image folders), the data folder checks and the
    # download's entry, the validation split, the loaders' rank and device, the whitening sample; the download tests
    # that reach prepare_cifar10 only (each server's shutdown takes 0.5 s)
    "cifar10_data": Target("datamodules/cifar10.py",
                           ("check_batch_size", "check_folder", "cifar10_layout", "prepare_cifar10", "find_batches",
                            "load_batches", "load_folders", "TensorBatches.__init__", "CIFAR10DataModule.__init__",
                            "CIFAR10DataModule.data_dir", "CIFAR10DataModule.layout", "CIFAR10DataModule.check",
                            "CIFAR10DataModule.setup", "CIFAR10DataModule.num_classes", "CIFAR10DataModule._batches",
                            "CIFAR10DataModule._on_device", "CIFAR10DataModule.val_dataloader",
                            "CIFAR10DataModule.test_dataloader", "CIFAR10DataModule._sized",
                            "CIFAR10DataModule.plain_training_images"),
                           ("tests/test_cifar10_load.py", "tests/test_cifar10_data.py",
                            "tests/test_darknet_net_options.py", "tests/test_darknet_step_options.py",
                            "tests/test_prepare_data.py", "tests/test_overfit_batches.py", "-m", "not slow", "-k",
                            "test_cifar10_load or (test_cifar10_data and not without_tarfiles and not reaching_outside"
                            " and not two_processes and not killed_attempt) or on_device or whitening_sample"
                            " or (test_prepare_data and cifar10) or overfitting_tensor_batches")),
    # dl2-classify's argparse front (defaults, one-line mistakes) and `python -m lightning_modules.darknet_classifier`
    "classify_command": Target("lightning_modules/commands.py", ("classify", "darknet"),
                               (*COMMAND_TESTS, "-k", "darknet_module or dl2_classify or default_device_auto"
                                " or value_the_parser or count_below_one or every_console_script or classify_gives"
                                " or (wrong_checkpoint and missing)")),
    # the WGAN's commands and the rest of its module: dl2-wgan-generate (samples, grid, slerp's latent walks), the
    # optimizers, setup's checks, val/fid's fake images, the counters in checkpoints, the gallery; the tests as node
    # ids, the functions called directly first
    "wgan_commands": Target(("lightning_modules/wgan_generate.py", "lightning_modules/wgan.py"),
                            ("generate", "slerp", "sample", "generated", "WGAN.configure_optimizers", "WGAN.setup",
                             "WGAN.validation_step", "WGAN.on_save_checkpoint", "WGAN.on_load_checkpoint",
                             "WGAN.log_samples"),
                            ("tests/test_wgan_reference.py::test_slerp_follows_the_great_circle",
                             "tests/test_wgan_reference.py::test_slerp_of_parallel_or_opposite_rows_is_linear_without"
                             "_nan",
                             "tests/test_wgan.py::test_optimizers_are_rmsprop_with_clipping_adam_with_the_penalty_or_as"
                             "_chosen",
                             "tests/test_wgan.py::test_the_counters_come_back_from_a_checkpoint_and_start_at_0_without"
                             "_them",
                             "tests/test_wgan.py::test_loss_g_is_kept_in_checkpoints_for_the_first_logged_step_after_a"
                             "_resume",
                             "tests/test_wgan.py::test_a_samples_noise_depends_on_the_seed_and_its_index_not_on_how_many"
                             "_are_drawn",
                             "tests/test_wgan_reference.py::test_interpolation_rows_walk_from_one_noise_to_another",
                             "tests/test_wgan_reference.py::test_a_walk_takes_two_images_or_more_and_0_is_none",
                             "tests/test_wgan_reference.py::test_a_reference_generator_file_makes_the_images_that"
                             "_generator_makes",
                             "tests/test_console_scripts.py::test_console_script_generate_writes_the_samples",
                             "tests/test_wgan.py::test_mismatched_data_and_model_isize_fail_clearly",
                             "tests/test_wgan.py::test_a_model_of_other_than_three_channels_is_refused_on_our_rgb_data",
                             "tests/test_gan_fid.py::test_wgan_validation_logs_the_formulas_distance_between_fixed"
                             "_noise_and_the_real_sample",
                             "tests/test_wgan.py::test_gradient_penalty_option_uses_adam_without_clamp_or_critic"
                             "_batchnorm",
                             "tests/test_wgan.py::test_sample_grid_every_n_generator_iterations_and_at_the_end",
                             "tests/test_wgan.py::test_the_final_grid_is_not_logged_again_at_a_count_already_logged",
                             "tests/test_wgan.py::test_resumed_run_continues_counters_and_schedule_mid_group")),
    # the CycleGAN's system beyond its losses and training step: the three Adams and their linear decay, the fit's
    # checks, each DDP rank's pool draws, val/fid's and the test's bookkeeping, the visuals grid, a resume's pools
    "cyclegan_system": Target("lightning_modules/cyclegan.py",
                              ("ImagePool.spread", "CycleGAN.configure_optimizers", "CycleGAN.on_fit_start",
                               "CycleGAN.on_validation_start", "CycleGAN.translate_domain",
                               "CycleGAN.validation_step", "CycleGAN.visuals_wanted", "CycleGAN.keep_visuals",
                               "CycleGAN.on_validation_epoch_end", "CycleGAN.log_eval_visuals", "CycleGAN.test_step",
                               "CycleGAN.on_load_checkpoint", "CycleGAN.log_visuals"),
                              ("tests/test_cyclegan_system.py", "tests/test_cyclegan.py",
                               "tests/test_cyclegan_steps.py", "tests/test_gan_fid.py", "-k",
                               "test_cyclegan_system or ddp_rank or max_epochs_short or max_epochs_past"
                               " or cyclegan_validation or (one_real_image and cyclegan) or cyclegan_validate_without"
                               " or test_metrics_are or resume_continues or visual_grid")),
    # the Darknet's training step, the one-cycle held past its end, the test's figures and CSV files
    "darknet_system": Target(("lightning_modules/darknet_classifier.py", "lightning_modules/darknet_interpret.py"),
                             ("OneCycleThenHold.get_lr", "DarknetClassifier.training_step", "confusion_figure",
                              "top_losses_figure", "write_rows"),
                             ("tests/test_darknet_system.py", "tests/test_darknet_optimizer_options.py",
                              "tests/test_darknet_interpret.py", "tests/test_resume_steps.py", "-k",
                              "test_darknet_system or seed_one_cycle or under_one_cycle or nesterov"
                              " or confusion_matrix_per_class or one_cycle_then_hold")),
    # nothing already written is lost: a stop signal's save and exit status (Ctrl-C 130, SIGTERM 143, DDP's agreement,
    # SLURM's requeue), the resume's reading of a mid-epoch stop and of a rerun validation, the checkpoint checks before
    # a fit, the step last.ckpt holds, results.json's epochs, the test on the weights in memory; the tests as node ids,
    # the hooks called directly first
    "stop_and_resume": Target(("callbacks/saving.py", "callbacks/resume.py", "callbacks/checkpoints.py",
                               "callbacks/job.py"),
                              ("SaveOnStop.on_fit_start", "SaveOnStop.on_train_start", "SaveOnStop.on_train_batch_end",
                               "SaveOnStop.on_validation_batch_end", "SaveOnStop._on_sigint", "SaveOnStop.on_exception",
                               "RerunStoppedValidation.on_validation_end",
                               "check_checkpoint", "check_checkpoint_class", "refuse_exported_resume",
                               "requeue_slurm_job", "saved_step", "save_if", "fit_progress", "weights_in_memory"),
                              (*HOOK_TESTS,
                               "tests/test_train_job.py::test_a_stop_signal_in_a_fast_dev_run_saves_no_checkpoint",
                               *(f"tests/test_native_subcommands.py::test_a_native_subcommand_refuses_another_systems"
                                 f"_checkpoint_before_any_folder[{subcommand}]" for subcommand in ("fit", "validate",
                                                                                                   "test")),
                               *(f"tests/test_stop_signals.py::test_ctrl_c_outside_the_training_batches_exits_130_and"
                                 f"_says_what_it_kept[{stage}]" for stage in ("setup", "sanity", "test")),
                               "tests/test_checkpoint_checks.py::test_another_systems_or_a_missing_checkpoint_is_refused"
                               "_before_a_run_folder",
                               "tests/test_checkpoint_checks.py::test_a_checkpoint_of_another_system_is_named",
                               "tests/test_checkpoint_checks.py::test_a_truncated_checkpoint_is_named_with_the_fix",
                               "tests/test_run_results.py::test_epochs_are_fractional_for_a_run_stopped_inside_an_epoch",
                               "tests/test_init_from.py::test_init_from_names_what_does_not_fit",
                               "tests/test_resume_steps.py::test_a_resume_with_max_steps_continues_a_mid_epoch_stop_where"
                               "_it_stopped[saved at an epoch's last batch]",
                               "tests/test_validation_stop.py::test_a_stop_in_the_epochs_validation_saves_and_the_resume"
                               "_runs_that_validation_again",
                               "tests/test_resume_steps.py::test_a_resume_with_max_steps_continues_a_mid_epoch_stop_where"
                               "_it_stopped[max_steps mid-epoch]")),
    # image files and lmdb values to uint8 RGB (16-bit, EXIF orientation, formats not read), the commands' file lists
    "decode": Target("datamodules/decode.py", ("image_files", "_to_tensor", "read_rgb", "_other_format", "decode_rgb"),
                     ("tests/test_decode.py", "tests/test_style_data.py", "tests/test_image_folder.py", "-k",
                      "test_decode or test_style_data or lmdb or corrupt")),
    # dl2-stylize and what it checks before the optimization (the accelerator, results that would replace inputs),
    # the Trainer settings L-BFGS refuses, a resume's image count, the noise start, the features and scaled losses
    "style_commands": Target(("lightning_modules/stylize.py", "lightning_modules/style_transfer.py"),
                             ("stylize", "check_results_spare_inputs", "check_accelerator", "median_filtered_noise",
                              "StyleTransfer.check_trainer", "StyleTransfer.on_load_checkpoint",
                              "StyleTransfer.features", "StyleTransfer.losses"),
                             ("tests/test_style_commands.py", "tests/test_console_scripts.py",
                              "tests/test_command_options.py", "tests/test_style_cli.py", "tests/test_style.py",
                              "tests/test_style_options.py", "tests/test_style_pyramid.py", "-k",
                              "(test_style_commands or stylize or resume or precision or max_steps or bf16"
                              " or several_devices_are_refused_with or gatys or seeds_plain or content_only"
                              " or a_batch_gives or average_pooling or tv_weight_adds) and not once_before"
                              " and not init_from and not job_writes and not across_a_level")),
    # the unpaired data module's set-up: the crop check from the headers, the download into a missing data_dir, the
    # domain loaders of test and validation, the squash of an image to a square
    "unpaired_data": Target("datamodules/unpaired.py",
                            ("check_crop_sizes", "UnpairedImageDataModule.__init__",
                             "UnpairedImageDataModule.prepare_data", "UnpairedImageDataModule._domain_loaders",
                             "load_image"),
                            ("tests/test_unpaired_data.py",
                             "tests/test_prepare_data.py::test_the_data_is_prepared_on_every_node[unpaired]",
                             "-m", "not slow")),
    # the phase scheduler's set-up: one of phases or a recipe, the model's own lr scheduler refused, a fit without
    # training batches, the recipe built at fit start, the lr_schedule.png plot and its W&B image
    "phase_setup": Target("callbacks/phase_scheduler.py",
                          ("TrainingPhaseScheduler.__init__", "TrainingPhaseScheduler.on_fit_start", "plot_schedule",
                           "TrainingPhaseScheduler._plot", "schedule_figure", "plot_phases", "phase_ends"),
                          ("tests/test_phase_setup.py", "tests/test_phase_math.py", "tests/test_phase_cycles.py",
                           "tests/test_phase_scheduler.py", "tests/test_phase_resume.py",
                           "-k", "test_phase_setup or test_phase_math or plot or wandb or own_lr_scheduler"
                           " or recipe or fitted_twice or sgdr_passes or seed_formula or switches or dicts_or_one")),
    # a phase's decay names, optimizer names and a recipe's share of the cycle
    "phase_types": Target("callbacks/training_phase.py", ("decay_type", "optimizer_class", "check_share"),
                          ("tests/test_phase_setup.py", "tests/test_phase_math.py", "tests/test_phase_definitions.py",
                           "tests/test_phase_cycles.py",
                           "-k", "test_phase_setup or test_phase_math or share or decay_no or bad_phase or yaml"
                           " or pct_start_0 or ends_of_their_range or partial")),
    # the VGG's weights from the torch cache or a file, and the forward hooks that keep the features
    "vgg_weights": Target("lightning_modules/nets/vgg.py", ("saved_features", "imagenet_state", "file_state"),
                          ("tests/test_vgg_weights.py", "tests/test_style_cli.py", "tests/test_style.py", "-k",
                           "test_vgg_weights or local_weights or torch_cache or without_weights or hooks_are_gone"
                           " or gatys")),
    # train.py's command line before the run: --system to its config, the checks of --data, of a config of another
    # system and of the job's options, the system help, the W&B run a train.main began, what is logged of the hardware
    # and the checkout; test_cli_checks.py's direct calls first, then the older tests as node ids (short fits)
    "cli_checks": Target(("train.py", "callbacks/cli.py", "callbacks/configs.py", "callbacks/wandb_run.py",
                           "callbacks/run_config.py"),
                         ("check_data", "check_job", "find_system", "system_to_config", "system_of", "config_model",
                          "model_flags", "print_system_help", "CLI.before_instantiate_classes", "finish_wandb_run",
                          "current_wandb_run", "hardware", "git_commit", "shipped_class", "exit_status"),
                         ("tests/test_cli_checks.py",
                          "tests/test_wandb_runs.py::test_the_exit_status_w_and_b_is_given_is_the_processs",
                          "tests/test_wandb_runs.py::test_a_wandb_run_of_the_callers_is_left_open",
                          "tests/test_refused_before_training.py::test_another_systems_data_module_is_refused_naming_both",
                          *(f"tests/test_train_help.py::test_{name}" for name in (
                              "system_help_lists_system_then_its_options_with_the_config_values",
                              "every_shipped_system_has_help", "help_without_system_lists_the_systems",
                              "help_trainer_shows_lightnings_trainer_options")),
                          "tests/test_one_line_errors.py::test_a_config_of_another_systems_model_beside_system_is_refused",
                          *(f"tests/test_refused_before_training.py::test_{name}" for name in (
                              "unknown_system_lists_the_systems", "a_run_name_that_is_a_path_is_refused",
                              "a_negative_save_every_minutes_is_refused",
                              "another_systems_data_module_is_refused_in_one_line_before_the_run_folder")),
                          *(f"tests/test_native_subcommands.py::test_{name}" for name in (
                              "a_native_subcommand_refuses_another_systems_checkpoint_before_any_folder",
                              "test_on_a_system_without_a_test_step_is_refused_before_any_folder")),
                          *(f"tests/test_lr_find_cli.py::test_{name}" for name in (
                              "lr_find_refuses_a_gan_that_steps_its_optimizers_itself",
                              "lr_find_options_without_lr_find_are_refused_instead_of_training")),
                          "tests/test_native_subcommands.py::test_native_test_takes_the_checkpoints_net_and_the_command"
                          "_lines_model_flags",
                          "tests/test_train_job.py::test_a_fast_dev_run_keeps_no_checkpoint_and_last_passes_over_it",
                          "tests/test_wandb_runs.py::test_each_train_main_in_one_process_logs_to_its_own_wandb_run",
                          "tests/test_run_config_yaml.py::test_a_runs_config_yaml_trains_a_new_run_beside_it_and_resumes"
                          "_it_with_its_checkpoint",
                          # check_job's --config files handed to the changed-options warning (`or ()` into `and ()`)
                          "tests/test_checkpoint_checks.py::test_a_resume_with_other_options_than_the_runs_says_which_and"
                          "_how_to_resume_as_it_began")),
    # the systems' constructors: the one-line refusals of values that cannot train, the nets built from the
    # hyper-parameters (critic batchnorm off under a gradient penalty, the MLP nets), the counters, metrics and pools a
    # fit starts from
    "wgan_init": Target("lightning_modules/wgan.py", ("WGAN.__init__",),
                        ("tests/test_system_inits.py", "tests/test_value_checks.py", "tests/test_wgan.py", "-k",
                         "(test_system_inits and wgan) or test_value_checks or optimizers_are or counters_come_back")),
    "cyclegan_init": Target("lightning_modules/cyclegan.py", ("CycleGAN.__init__",),
                            ("tests/test_system_inits.py", "tests/test_value_checks.py", "tests/test_cyclegan.py", "-k",
                             "(test_system_inits and cyclegan) or test_value_checks or formula or halved")),
    "style_init": Target("lightning_modules/style_transfer.py", ("StyleTransfer.__init__",),
                         ("tests/test_system_inits.py", "tests/test_value_checks.py", "tests/test_style.py",
                          "tests/test_style_options.py", "tests/test_style_commands.py", "-k",
                          "(test_system_inits and (style or pyramid)) or test_value_checks or unknown_layer or gatys"
                          " or average_pooling or blend_weights_are or losses_are or checkpoint_read_without")),
    "darknet_init": Target("lightning_modules/darknet_classifier.py", ("DarknetClassifier.__init__",),
                           ("tests/test_system_inits.py", "tests/test_darknet.py", "tests/test_darknet_interpret.py",
                            "-k", "(test_system_inits and (top_losses or validation)) or test_darknet"
                            " or interpret_false")),
    # the style transfer's data module beyond the style_data target: the images read, the default files, the batch
    # repeated on the training device
    "style_datamodule": Target("datamodules/style.py",
                               ("read_image", "resize", "RepeatBatch.__init__", "RepeatBatch.__iter__",
                                "StyleTransferDataModule.__init__", "StyleTransferDataModule.content_files",
                                "StyleTransferDataModule.style_files", "StyleTransferDataModule.train_dataloader"),
                               ("tests/test_style_data.py",)),
    # SLURM's requeue signal outside the training (RequeueSignal, SaveOnStop.on_fit_end's requeue after the fit's last
    # validation), the step a TensorBoard resume purges from, the fix a checkpoint of another network names, the
    # Ctrl-C in the test after the fit; the tests as files and node ids, fastest first, without the multi-process ones
    # (test_slurm.py's signal outside the training, 74 s, and its two ranks, 14 s; test_stop_signals.py's DDP Ctrl-C,
    # 35 s)
    "requeue_signal": Target(("callbacks/saving.py", "callbacks/checkpoints.py", "callbacks/job.py"),
                             ("RequeueSignal.__init__", "RequeueSignal.install", "RequeueSignal.follow",
                              "RequeueSignal.uninstall", "RequeueSignal.__call__", "RequeueSignal.requeue_now",
                              "SaveOnStop.on_fit_end", "checkpoint_batches", "network_fix", "network_options",
                              "ctrl_c_stops_the_test", "saved_training"),
                             (*HOOK_TESTS,
                              "tests/test_stop_signals.py::test_ctrl_c_outside_the_training_batches_exits_130_and_says"
                              "_what_it_kept[test]",
                              "tests/test_tensorboard.py",
                              "tests/test_slurm.py::test_sbatch_script_is_well_formed_and_requeues",
                              "tests/test_slurm.py::test_each_layout_starts_train_py_with_arguments_it_accepts",
                              "tests/test_slurm.py::test_requeue_saves_in_the_run_folder_and_the_next_launch_resumes"
                              "_there")),
    # torchrun's and srun's process count against the Trainer's devices and nodes (the two-node job left out: slow)
    "launchers": Target("callbacks/strategy.py", ("check_launched_processes",),
                        ("tests/test_launchers.py", "-m", "not slow")),
    # a resume with another number of batches an epoch (processes, batch size): the data's share of the epoch
    "epoch_length": Target("callbacks/resume.py",
                           ("EpochLengthResume.__init__", "EpochLengthResume.state_dict",
                            "EpochLengthResume.load_state_dict", "EpochLengthResume.on_train_start"),
                           ("tests/test_epoch_lengths.py", "-k",
                            "other_batches_an_epoch or counting_that_one or cannot_or_need_not"
                            " or epochs_end_a_resume or said_and_not_at_its_start or max_steps_counts_the_steps")),
    # the phase scheduler's position on a resume with another number of steps an epoch, and its saved state
    "phase_resume": Target("callbacks/phase_scheduler.py",
                           ("TrainingPhaseScheduler.on_train_start", "TrainingPhaseScheduler.state_dict",
                            "TrainingPhaseScheduler.load_state_dict", "resumed_batches",
                            "TrainingPhaseScheduler.schedule", "TrainingPhaseScheduler.changed_schedule",
                            "same_schedule"),
                           ("tests/test_phase_scheduler.py", "tests/test_phase_cycles.py", "tests/test_phase_resume.py",
                            "tests/test_epoch_lengths.py::test_the_schedule_and_the_data_go_on_from_the_same_batch_after"
                            "_a_resume_with_other_batches_an_epoch",
                            "tests/test_epoch_lengths.py::test_with_gradient_accumulation_the_schedule_steps_for_the"
                            "_batches_the_data_goes_on_after", "-k",
                            "resume or other_steps or keeps_the_cycle or swa or save_cycles or accumulation or manual"
                            " or fractional or differ_in_one_field")),
    # 2026-11-30: --init_from of the reference projects' own files (their nets in our names), the top losses' images
    "wgan_reference_init": Target("lightning_modules/wgan_reference.py",
                                  ("reference_checkpoint", "nets_only", "left_out"),
                                  ("tests/test_wgan_reference.py", "-k", "init_from or any_depth")),
    "cyclegan_reference_init": Target("lightning_modules/cyclegan_reference.py",
                                      ("reference_checkpoint", "reference_discriminator"),
                                      ("tests/test_export.py", "-k",
                                       "junyanz and (init_from or without_latest or missing_one)")),
    "top_loss_images": Target("datamodules/cifar10.py",
                              ("folder_files", "TensorBatches.indices", "CIFAR10DataModule.test_files"),
                              ("tests/test_darknet_interpret.py", "tests/test_data_ddp.py",
                               "tests/test_cifar10_batches.py", "-k",
                               "confusion or darknet_test_loss or test_cifar10_batches")),
    # 2026-12-01: the run's folders checked as the commands' output folders; `--seed_everything true`
    "run_folders_and_seed": Target(("callbacks/run_folder.py", "callbacks/cli.py"),
                                   ("check_run_folders", "random_seed", "CLI._set_seed"),
                                   ("tests/test_train_job.py", "tests/test_refused_before_training.py", "-k",
                                    "below_a_file or cannot_write_into or "
                                    "a_file_where_the_run or dangling or seed_everything or seed_numpy")),
    # the job: fit, test, results.json (its numbers, nothing left to train, the fit's refusals in one line and a bug's
    # traceback); the tiny in-process runs, the DDP and subprocess ones left out (mutation run 2026-12-01: 36 / 39)
    "job": Target("callbacks/job.py", ("run_job",),
                  ("tests/test_run_results.py::test_fit_seconds_is_the_fits_wall_time_and_is_printed",
                   "tests/test_one_line_errors.py::test_a_bug_raising_value_error_in_the_fit_keeps_its_traceback",
                   "tests/test_train_job.py::test_job_fits_tests_and_writes_results",
                   "tests/test_wandb_runs.py::test_a_run_of_the_callers_is_logged_into_and_left_open",
                   "tests/test_train_job.py::test_results_leave_out_the_lr_monitors_values_which_lag_behind",
                   "tests/test_train_job.py::test_crashed_run_resumes_from_last_in_the_same_folder",
                   "tests/test_run_config_yaml.py::test_a_runs_config_yaml_trains_a_new_run_beside_it_and_resumes_it_with_its_checkpoint",
                   "tests/test_run_config_yaml.py::test_a_config_yaml_written_before_2026_11_29_of_a_moved_run_is_refused",
                   "tests/test_train_job.py::test_limit_batches_of_1_on_the_command_line_is_one_batch_not_all",
                   "tests/test_native_subcommands.py::test_native_test_subcommand_writes_its_own_folder_not_the_checkpoints_run",
                   "tests/test_run_config_yaml.py::test_a_copy_of_the_config_with_phases_in_place_of_one_cycle_runs_them_once_one_cycle_is_null",
                   "tests/test_train_job.py::test_enable_checkpointing_false_trains_without_checkpoints",
                   "tests/test_train_job.py::test_a_fast_dev_run_keeps_no_checkpoint_and_last_passes_over_it",
                   "tests/test_train_job.py::test_a_fit_of_no_training_batches_validates_and_tests_with_the_phase_scheduler",
                   "tests/test_lr_find_cli.py::test_lr_find_refuses_a_gan_that_steps_its_optimizers_itself",
                   "tests/test_train_job.py::test_a_resume_with_nothing_left_to_train_keeps_the_results_and_says_so",
                   "tests/test_train_job.py::test_bf16_mixed_on_cpu",
                   "tests/test_train_job.py::test_two_jobs_in_one_process_get_their_own_run_folders",
                   "tests/test_validation_stop.py::test_a_stop_in_the_epochs_validation_saves_and_the_resume_runs_that_validation_again",
                   "tests/test_validation_stop.py::test_a_stop_in_the_last_validation_is_run_again_on_resume",
                   "tests/test_epoch_lengths.py::test_the_schedule_and_the_data_go_on_from_the_same_batch_after_a_resume_with_other_batches_an_epoch",
                   "tests/test_epoch_lengths.py::test_with_gradient_accumulation_the_schedule_steps_for_the_batches_the_data_goes_on_after",
                   "tests/test_epoch_lengths.py::test_at_an_epochs_end_a_resume_with_other_batches_an_epoch_counts_the_earlier_epochs_in_the_new_ones",
                   "tests/test_run_results.py::test_true_half_precision_feeds_the_model_bf16_images",
                   "tests/test_run_results.py::test_final_lr_is_the_lr_of_the_last_batch_not_the_next_epochs",
                   "tests/test_run_results.py::test_a_cyclegan_fast_dev_run_trains_as_many_batches_as_asked",
                   "tests/test_last_ckpt.py::test_a_run_that_ends_mid_epoch_leaves_last_ckpt_at_its_last_step",
                   "tests/test_last_ckpt.py::test_a_config_without_a_checkpoint_callback_keeps_lightnings_in_the_run_folder",
                   "tests/test_resume_steps.py::test_the_torch_one_cycle_path_resumed_over_more_epochs_trains_on_at_its_final_lr",
                   "tests/test_run_folders.py::test_last_passes_over_a_newer_run_that_stopped_before_training",
                   "tests/test_run_folders.py::test_last_refuses_a_newer_run_without_checkpoint_and_leaves_the_older_one_alone",
                   "tests/test_run_folders.py::test_last_skips_the_newer_run_of_another_system_sharing_the_root",
                   "tests/test_checkpoint_checks.py::test_a_resume_with_other_options_than_the_runs_says_which_and_how_to_resume_as_it_began",
                   "tests/test_run_folders.py::test_an_earlier_checkpoint_of_a_run_is_not_carried_on_in_that_run_but_in_a_new_one",
                   "tests/test_run_folder_choices.py::test_last_names_the_newest_folder_without_run_json_and_the_newest_older_run",
                   "tests/test_refused_run_cleanup.py::test_a_refused_run_discards_the_folders_made_for_it_and_ends_its_wandb_run",
                   "tests/test_run_results.py::test_epochs_are_fractional_for_a_run_stopped_inside_an_epoch",
                   "tests/test_resume_steps.py::test_a_resume_with_max_steps_from_an_epoch_end_trains_every_remaining_epoch",
                   "tests/test_resume_steps.py::test_a_wgan_stopped_inside_an_epoch_by_max_steps_trains_the_rest_of_it_on_resume",
                   "tests/test_resume_steps.py::test_a_resume_with_max_steps_continues_a_mid_epoch_stop_where_it_stopped",
                   "tests/test_init_from.py::test_init_from_starts_a_new_run_from_the_weights_alone",
                   "tests/test_one_line_errors.py::test_the_fits_own_refusals_are_one_line",
                   "tests/test_one_line_errors.py::test_the_models_one_cycle_beside_the_configs_phase_scheduler_is_refused_with_both_ways_out",
                   "tests/test_run_results.py::test_limit_test_batches_0_trains_skips_the_test_and_writes_the_results",
                   "tests/test_wgan.py::test_train_job_writes_checkpoint_and_sample_grid_and_generate_reads_it",
                   "tests/test_cyclegan_cli.py::test_job_trains_tests_and_writes_visuals_checkpoint_and_results",
                   "tests/test_cyclegan_cli.py::test_a_dataset_without_test_folders_trains_warns_at_once_and_skips_the_test")),
    # the checks and settings once a run's classes are built (config.yaml of a resume, the checkpoint callbacks'
    # folder, the saves, the resume callbacks, the data check, the run folder): in-process runs
    "instances": Target("callbacks/cli.py", ("CLI.check_instances",),
                        ("tests/test_last_ckpt.py::test_save_every_minutes_0_saves_nothing_inside_an_epoch",
                         "tests/test_resume_steps.py::test_the_first_callback_of_a_resume_at_an_epoch_end_reads_the_next"
                         "_epoch_as_training_starts",
                         "tests/test_native_subcommands.py::test_a_native_fit_resume_given_the_runs_own_config_says_so_of"
                         "_its_changed_options",
                         "tests/test_train_job.py::test_job_fits_tests_and_writes_results",
                         "tests/test_run_folders.py::test_an_earlier_checkpoint_of_a_run_is_not_carried_on_in_that_run_but_in_a_new_one",
                         "tests/test_run_config_yaml.py::test_a_runs_config_yaml_trains_a_new_run_beside_it_and_resumes_it_with_its_checkpoint",
                         "tests/test_checkpoint_checks.py::test_a_resume_with_other_options_than_the_runs_says_which_and_how_to_resume_as_it_began",
                         "tests/test_checkpoint_checks.py::test_another_systems_or_a_missing_checkpoint_is_refused_before_a_run_folder",
                         "tests/test_epoch_lengths.py::test_with_gradient_accumulation_the_schedule_steps_for_the_batches_the_data_goes_on_after",
                         "tests/test_gan_fid.py::test_the_validate_subcommand_refused_without_features_leaves_no_run_folder",
                         "tests/test_gan_fid.py::test_cyclegan_job_logs_val_fid_and_a_grid_every_n_epochs",
                         "tests/test_last_ckpt.py::test_a_config_without_a_checkpoint_callback_keeps_lightnings_in_the_run_folder",
                         "tests/test_last_ckpt.py::test_last_ckpt_is_saved_on_a_time_interval_within_the_epoch",
                         "tests/test_last_ckpt.py::test_last_ckpt_is_written_at_each_epoch_end_even_without_a_top_k_save",
                         "tests/test_one_line_errors.py::test_a_config_of_another_systems_model_beside_system_is_refused",
                         "tests/test_resume_order.py::test_a_resume_inside_an_epoch_trains_the_rest_of_that_epochs_order",
                         "tests/test_resume_steps.py::test_a_resume_with_max_steps_from_an_epoch_end_trains_every_remaining_epoch",
                         "tests/test_resume_steps.py::test_a_resume_with_max_steps_continues_a_mid_epoch_stop_where_it_stopped",
                         "tests/test_run_folders.py::test_a_named_run_that_stopped_before_training_can_be_retried_under_its_name",
                         "tests/test_run_folders.py::test_last_passes_over_a_newer_run_that_stopped_before_training",
                         "tests/test_run_folders.py::test_last_skips_the_newer_run_of_another_system_sharing_the_root",
                         "tests/test_run_results.py::test_a_cyclegan_fast_dev_run_trains_as_many_batches_as_asked",
                         "tests/test_style_cli.py::test_a_refused_resume_leaves_the_run_and_its_wandb_run_as_they_were",
                         "tests/test_tensorboard.py::test_a_resume_from_a_save_at_a_batchs_end_keeps_that_batchs_own_point",
                         "tests/test_run_config_yaml.py::test_config_yaml_goes_into_the_run_folder_whatever_the_loggers_folder",
                         "tests/test_wandb_runs.py::test_each_train_main_in_one_process_logs_to_its_own_wandb_run",
                         "tests/test_wandb_runs.py::test_a_resumed_runs_wandb_summary_keeps_the_best_of_its_earlier_part",
                         "tests/test_wandb_runs.py::test_a_run_logged_into_an_open_wandb_run_names_that_run_in_run_json",
                         "tests/test_wandb_runs.py::test_a_disabled_wandb_run_open_in_the_process_is_not_taken_for_the_runs_w_and_b_run",
                         "tests/test_wandb_runs.py::test_a_run_a_wandb_sweep_agent_starts_keeps_the_agents_run_id",
                         "tests/test_native_subcommands.py::test_native_test_subcommand_writes_its_own_folder_not_the_checkpoints_run",
                         "tests/test_train_job.py::test_a_fast_dev_run_keeps_no_checkpoint_and_last_passes_over_it",
                         "tests/test_native_subcommands.py::test_test_on_a_system_without_a_test_step_is_refused_before_any_folder",
                         "tests/test_refused_before_training.py::test_another_systems_data_module_is_refused_in_one_line_before_the_run_folder",
                         "tests/test_refused_before_training.py::test_a_refused_run_leaves_nothing_behind",
                         "tests/test_refused_before_training.py::test_a_refusal_keeps_the_folder_of_a_resumed_run_and_of_one_that_began_training",
                         "tests/test_refused_before_training.py::test_a_negative_save_every_minutes_is_refused",
                         "tests/test_train_job.py::test_a_resume_with_nothing_left_to_train_keeps_the_results_and_says_so",
                         "tests/test_refused_before_training.py::test_a_folder_given_inside_another_runs_folder_is_refused_before_training",
                         "tests/test_train_help.py::test_classes_are_found_by_their_short_names",
                         "tests/test_train_help.py::test_help_trainer_shows_lightnings_trainer_options",
                         "tests/test_tensorboard.py",
                         "tests/test_shipped_configs.py::test_darknet_shipped_config",
                         "tests/test_shipped_configs.py::test_one_wandb_run_across_a_resume_without_credentials_with_the_whole_config")),
    # 2026-12-01: the one-line messages a user sees of train.py's and the commands' mistakes (a UserError inside
    # jsonargparse's and the workers' wrappers, jsonargparse's parser reports condensed, a Trainer option's typo, the
    # commands' count options and own flags); the tests that call them directly first, then the in-process refusals
    "messages": Target("callbacks/errors.py",
                       ("user_message", "one_line", "condense_parser_error", "close_option", "require_at_least_one",
                        "own_flags", "flag_values"),
                       ("tests/test_console_scripts.py::test_a_count_of_1_is_taken_and_each_count_is_checked",
                        "tests/test_console_scripts.py::test_a_commands_own_flags_replace_train_pys_in_a_users_mistake"
                        "_and_a_bugs_error_keeps_its_type",
                        *(f"tests/test_one_line_errors.py::test_{name}" for name in (
                           "user_message_follows_an_error_raised_while_handling_a_user_error_only_from_a_wrapper",
                           "user_message_finds_the_user_error_in_a_worker_report",
                           "a_package_an_option_needs_is_one_line_and_a_bugs_import_error_keeps_its_traceback",
                           "a_bad_value_from_the_command_line_is_one_line",
                           "a_bad_value_in_a_config_file_is_named_as_the_files_not_as_a_flag",
                           "an_option_the_last_callback_lacks_is_named_once_with_that_callback",
                           "a_mistyped_key_in_a_config_file_is_named_as_its_key",
                           "a_bad_phase_spec_is_one_line",
                           "the_offline_cifar10_download_error_is_one_line",
                           "a_config_of_another_systems_model_beside_system_is_refused",
                           "the_fits_own_refusals_are_one_line",
                           "a_bug_raising_value_error_in_the_fit_keeps_its_traceback",
                           "a_bug_lightning_reports_as_misconfiguration_keeps_its_traceback")),
                        "tests/test_console_scripts.py::test_a_count_below_one_is_refused_in_one_line",
                        "tests/test_console_scripts.py::test_a_value_the_parser_refuses_is_one_line",
                        "tests/test_command_options.py::test_inference_commands_say_a_wrong_checkpoint_in_one_line",
                        "tests/test_command_options.py::test_a_failure_that_is_not_the_users_keeps_its_traceback",
                        "tests/test_style_commands.py::test_stylize_errors_name_its_own_flags")),
    # the files the inference commands and train.py find beside a checkpoint (a run folder's last.ckpt, `last`'s runs,
    # the run's config.yaml, a reference project's tensors loaded by position) and the W&B run's id, tags, login check
    # and settings; tests that call them directly or through one command, no fit
    "inference_files": Target(("lightning_modules/inference.py", "callbacks/wandb_run.py"),
                              ("load_by_position", "or_reference", "trained_runs", "trained_run",
                               "run_folder_checkpoint", "run_config_file", "tensor_file", "new_wandb_id", "env_tags",
                               "wandb_logged_in", "forget_wandb_settings"),
                              (*(f"tests/test_wandb_runs.py::test_{name}" for name in (
                                  "a_new_wandb_id_is_eight_lower_case_letters_and_digits_as_wandbs_own",
                                  "wandb_mode_set_counts_as_decided_and_no_login_is_checked",
                                  "a_callers_open_wandb_run_counts_as_logged_in_and_is_left_open",
                                  "an_api_key_counts_as_logged_in_without_asking_the_server",
                                  "a_wandb_without_logins_prompt_option_is_asked_for_its_stored_key",
                                  "an_older_wandb_whose_set_up_cannot_be_read_is_always_set_up_afresh",
                                  "wandbs_settings_of_a_callers_run_or_of_no_set_up_here_are_left_alone_and_the_flag"
                                  "_names_the_mode")),
                               "tests/test_wgan_reference.py::test_a_reference_file_is_read_without_running_the_code"
                               "_pickled_in_it",
                               "tests/test_wandb_runs.py::test_the_login_check_after_an_offline_run_in_the_process_says"
                               "_nothing",
                               "tests/test_wandb_runs.py::test_wandbs_settings_in_the_mode_a_run_wants_are_kept",
                               "tests/test_prepare_run.py::test_wandbs_own_variables_stand_for_the_options_not_given",
                               "tests/test_checkpoint_checks.py::test_a_checkpoint_of_other_shapes_names_the_weight_and"
                               "_both_shapes",
                               "tests/test_checkpoint_checks.py::test_a_checkpoint_outside_a_run_folder_names_the_options"
                               "_it_was_trained_with_not_a_missing_config",
                               "tests/test_command_options.py::test_last_without_a_run_is_named_by_the_gan_commands_too",
                               "tests/test_darknet_inference.py::test_a_run_folder_or_last_stands_for_the_runs_last"
                               "_checkpoint",
                               "tests/test_export.py::test_last_among_runs_of_three_systems_names_them_and_a_path_is"
                               "_read_as_given",
                               "tests/test_wgan_reference.py::test_a_reference_generator_file_makes_the_images_that"
                               "_generator_makes",
                               "tests/test_wgan_reference.py::test_a_file_in_the_references_names_but_other_shapes_is"
                               "_named",
                               "tests/test_wgan_reference.py::test_a_critic_is_named",
                               "tests/test_translate.py::test_a_reference_generator_file_translates_as_that_generator",
                               "tests/test_translate.py::test_a_file_that_is_neither_checkpoint_nor_reference_generator"
                               "_is_named")),
}
