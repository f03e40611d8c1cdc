/* aletheia: the kind table's rows in match order: the first whose pattern fits a path is its kind
 * (README "The tree"). Each row is defined in the file named after it; a new kind of path is its
 * row there and one line here. Included by internal.h (declarations) and dispatch.c (the table). */
KIND(root)               /* ctl.c */
KIND(ctl)
KIND(ctl_status)
KIND(ctl_import)         /* ctl_import.c */
KIND(ctl_fsck)           /* ctl_fsck.c */
KIND(ctl_prefetch)       /* dsprefetch.c */
KIND(project)            /* project.c */
KIND(project_index)      /* report.c */
KIND(datasets)
KIND(experiments)
KIND(metadata_dir)       /* metadata.c */
KIND(metadata)
KIND(dataset)            /* dataset.c */
KIND(dataset_json)
KIND(dataset_description)        /* description.c */
KIND(dataset_file)               /* blobfiles.c: after the dataset's own names */
KIND(experiment)                 /* experiment.c */
KIND(runs)
KIND(experiment_description)     /* description.c */
KIND(runs_csv)                   /* runs_csv.c */
KIND(experiment_index)           /* report.c */
KIND(experiment_plots)           /* plots.c */
KIND(runs_changed_csv)           /* runs_changed.c */
KIND(best)                       /* best.c */
KIND(best_dir)
KIND(best_link)
KIND(tagged)                     /* tags.c */
KIND(tagged_tag)
KIND(tagged_link)
KIND(experiment_artifact)        /* blobfiles.c */
KIND(run)                /* run.c */
KIND(run_json)           /* run_json.c */
KIND(run_plots)          /* plots.c */
KIND(status)             /* status.c */
KIND(fold)               /* run_text.c */
KIND(model)
KIND(run_description)
KIND(heartbeat)
KIND(system_json)
KIND(params)             /* params.c */
KIND(param)
KIND(params_json)
KIND(metrics)            /* metrics.c */
KIND(metric)
KIND(run_artifact)       /* blobfiles.c */
KIND(output_log)
KIND(run_datasets)       /* links.c */
KIND(run_link)
KIND(run_tags)           /* tags.c */
KIND(run_tag)
